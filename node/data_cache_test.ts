import assert from "node:assert/strict";
import { join } from "node:path";
import { createDataService } from "../services/data/mod.ts";
import { systemClock } from "../core/clock.ts";
import { TooLargeError } from "../core/errors.ts";
import { openBucket } from "../core/objects.ts";
import { DATA_BUCKET, type DataVersion } from "../core/schema.ts";
import { tarStream } from "../core/tar.ts";
import { startTestNats, tempDir, testLogger } from "../tests/kit/mod.ts";
import { createDataCache } from "./data_cache.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function setup(nats: Awaited<ReturnType<typeof startTestNats>>) {
  const kv = await Deno.openKv(join(nats.dir, "state.kv"));
  const data = await createDataService({ nc: nats.nc, kv, clock: systemClock, log: testLogger() });
  /** Stores a version holding `files` (path → size in bytes of one repeated letter). */
  const version = async (name: string, files: Record<string, number>) => {
    const sources = Object.entries(files).map(([path, size]) => {
      const bytes = new Uint8Array(size).fill(path.charCodeAt(0));
      return { path, size, mode: path.endsWith(".sh") ? 0o755 : 0o644, open: () => ReadableStream.from([bytes]) };
    });
    return (await data.put(name, tarStream(sources), { format: { kind: "tar" }, owner: "t" })).record.version;
  };
  return { kv, version, bucket: () => openBucket(nats.nc, DATA_BUCKET) };
}

Deno.test({
  name: "data cache fetches a version once for many concurrent users and hands out a read-only folder",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using dir = await tempDir();
    const t = await setup(nats);
    const v = await t.version("set", { "a.txt": 10, "sub/b.bin": 2_500_000, "copy.txt": 10, "run.sh": 5 });
    const cache = await createDataCache({ dir: dir.path, capBytes: 2 ** 30, bucket: t.bucket, log: testLogger() });
    const leases = await Promise.all(Array.from({ length: 6 }, () => cache.acquire("set", v)));
    assert.equal(cache.fetches, 1, "six users, one fetch");
    const path = leases[0].path;
    assert.ok(leases.every((l) => l.path === path));
    assert.equal((await Deno.stat(join(path, "sub/b.bin"))).size, 2_500_000);
    assert.equal(await Deno.readTextFile(join(path, "a.txt")), "a".repeat(10));
    assert.equal((await Deno.stat(join(path, "run.sh"))).mode! & 0o111, 0o111, "executable bit kept");
    await assert.rejects(Deno.writeTextFile(join(path, "a.txt"), "changed"), "a file cannot be written");
    await assert.rejects(Deno.writeTextFile(join(path, "new.txt"), "x"), "no file can be created");
    await assert.rejects(Deno.remove(join(path, "sub/b.bin")), "no file can be removed");
    assert.equal(await Deno.readTextFile(join(path, "a.txt")), "a".repeat(10));
    for (const l of leases) l.release();
    assert.equal(cache.bytes, 2_500_025);
    t.kv.close();
  },
});

Deno.test({
  name: "data cache evicts the least recently used idle version, never one in use, and refuses one over its cap",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using dir = await tempDir();
    const t = await setup(nats);
    const v1 = await t.version("one", { "f": 1000 });
    const v2 = await t.version("two", { "g": 1000 });
    const v3 = await t.version("three", { "h": 1500 });
    const huge = await t.version("huge", { "x": 5000 });
    const make = () => createDataCache({ dir: dir.path, capBytes: 3000, bucket: t.bucket, log: testLogger() });
    const cache = await make();
    (await cache.acquire("one", v1)).release();
    const held = await cache.acquire("two", v2);
    (await cache.acquire("three", v3)).release();
    assert.equal(cache.fetches, 3);
    assert.equal(cache.bytes, 2500, "one (least recently used, idle) was evicted");
    await assert.rejects(Deno.stat(join(dir.path, v1.slice(7))), "its folder is gone");
    (await cache.acquire("one", v1)).release();
    assert.equal(cache.fetches, 4, "fetched again after eviction");
    assert.ok(await Deno.stat(join(held.path, "g")), "the version in use stayed");
    held.release();
    await assert.rejects(
      cache.acquire("huge", huge),
      (e) =>
        e instanceof TooLargeError &&
        /size 5000 bytes exceeds this node's cache of 3000 bytes \(--cache-size\)/.test(e.message),
    );

    const restarted = await make();
    assert.equal(restarted.bytes, cache.bytes, "a restarted node finds what it fetched");
    (await restarted.acquire("one", v1)).release();
    assert.equal(restarted.fetches, 0);
    await assert.rejects(
      restarted.acquire("gone", `sha256:${"0".repeat(64)}` as DataVersion),
      /as it was deleted/,
    );
    t.kv.close();
  },
});
