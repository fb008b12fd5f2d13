import assert from "node:assert/strict";
import { join } from "node:path";
import { openBucket } from "../core/objects.ts";
import { sha256Digest } from "../core/package.ts";
import { type Digest, PACKAGE_BUCKET } from "../core/schema.ts";
import { makeZip, startTestNats, tempDir } from "../tests/kit/mod.ts";
import { copyTree, createPackageCache, SMALL_TREE } from "./cache.ts";
import { createCacheBudget } from "./cache_budget.ts";

/** A tree of `files` files in a subfolder, an executable and a symlink. */
async function makeTree(root: string, files: number) {
  await Deno.mkdir(join(root, "sub"), { recursive: true });
  await Deno.writeTextFile(join(root, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  for (let i = 0; i < files; i++) await Deno.writeTextFile(join(root, "sub", `f${i}.txt`), `file ${i}`);
  await Deno.symlink("sub/f0.txt", join(root, "link"));
}

for (
  const [what, files] of [["a small tree (synchronous calls)", 2], ["a larger tree", SMALL_TREE.entries + 4]] as const
) {
  Deno.test(`copyTree() copies ${what}: contents, modes and symlinks`, async () => {
    await using dir = await tempDir();
    const src = join(dir.path, "src");
    await makeTree(src, files);
    for (const copy of ["a", "b"]) {
      const dst = join(dir.path, "runs", copy);
      await copyTree(src, dst);
      assert.equal(await Deno.readTextFile(join(dst, "sub", `f${files - 1}.txt`)), `file ${files - 1}`);
      assert.equal((await Deno.stat(join(dst, "run.sh"))).mode! & 0o777, 0o755);
      assert.equal(await Deno.readLink(join(dst, "link")), "sub/f0.txt");
      assert.equal((await Array.fromAsync(Deno.readDir(join(dst, "sub")))).length, files);
    }
    // Copies are private: changing one changes neither the source nor the other copy.
    await Deno.writeTextFile(join(dir.path, "runs", "a", "sub", "f0.txt"), "changed");
    assert.equal(await Deno.readTextFile(join(src, "sub", "f0.txt")), "file 0");
    assert.equal(await Deno.readTextFile(join(dir.path, "runs", "b", "sub", "f0.txt")), "file 0");
  });
}

Deno.test({
  name: "createPackageCache() streams a package from the bucket to disk, unpacks it once and leaves no zip behind",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using nats = await startTestNats();
    await using dir = await tempDir();
    const bucket = await openBucket(nats.nc, PACKAGE_BUCKET, { create: true });
    // Over a few 1 MiB chunks, so that the read is a stream of several.
    const random = crypto.getRandomValues(new Uint8Array(60_000));
    const big = Array.from({ length: 40 }, () => btoa(String.fromCharCode(...random.map((b, i) => b ^ i)))).join("");
    const bytes = await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\n", big });
    const digest = await sha256Digest(bytes);
    await bucket.put(digest, ReadableStream.from([bytes]));
    const cache = await createPackageCache(join(dir.path, "packages"), () => Promise.resolve(bucket));
    const root = (await cache.acquire(digest, "run.sh")).root;
    assert.equal((await cache.acquire(digest, "run.sh")).root, root);
    assert.equal(cache.fetches, 1);
    assert.equal((await Deno.readTextFile(join(root, "big"))).length, big.length);
    assert.equal((await Deno.stat(join(root, "run.sh"))).mode! & 0o777, 0o755);
    const names = (await Array.fromAsync(Deno.readDir(join(dir.path, "packages")))).map((e) => e.name).sort();
    assert.deepEqual(names, [digest, `${digest}.ok`]);
    await assert.rejects(cache.acquire(`sha256-${"0".repeat(64)}`, "run.sh"), /does not hold it/);
  },
});

Deno.test({
  name: "the package cache evicts the least recently used idle package when --cache-size is reached, never one in use",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using nats = await startTestNats();
    await using dir = await tempDir();
    const store = await openBucket(nats.nc, PACKAGE_BUCKET, { create: true });
    const digests: Digest[] = [];
    for (const name of ["a", "b", "c"]) {
      const zip = await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 1\n`,
        "run.sh": `#!/bin/sh\n`,
        "big.bin": name.repeat(40_000),
      });
      const digest = `sha256-${name.repeat(64)}` as Digest;
      await store.put(digest, ReadableStream.from([zip]));
      digests.push(digest);
    }
    // Room for two packages of about 40 KB.
    const budget = createCacheBudget(100_000);
    const cache = await createPackageCache(join(dir.path, "packages"), () => Promise.resolve(store), budget);
    const [a, b, c] = digests;
    const present = (d: Digest) => Deno.stat(join(dir.path, "packages", d)).then(() => true, () => false);
    const use = async (d: Digest) => (await cache.acquire(d, "run.sh")).release();
    await use(a);
    await use(b);
    assert.ok(budget.bytes > 80_000 && budget.bytes <= 100_000, `two packages counted: ${budget.bytes}`);
    await use(c);
    assert.deepEqual([await present(a), await present(b), await present(c)], [false, true, true], "a went");
    const held = await cache.acquire(b, "run.sh");
    await use(c); // c used last: b is now the least recently used, but in use
    await use(a);
    assert.deepEqual([await present(a), await present(b), await present(c)], [true, true, false], "c went, not b");
    held.release();
    assert.equal(cache.fetches, 4, "a was fetched again after its eviction");
    // A restart counts what is on disk.
    const again = createCacheBudget(100_000);
    await createPackageCache(join(dir.path, "packages"), () => Promise.resolve(store), again);
    assert.equal(again.bytes, budget.bytes);
  },
});
