import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { TooLargeError } from "../core/errors.ts";
import { sha256Digest, sha256File } from "../core/package.ts";
import { zipFolder } from "../core/package_zip.ts";
import { tempDir } from "../tests/kit/mod.ts";
import { loadPackage } from "./package_file.ts";

const MiB = 2 ** 20;

/** A task folder with two incompressible files of 3 and 1 MiB and a small one. */
async function bigFolder(root: string) {
  await Deno.mkdir(root, { recursive: true });
  await Deno.writeTextFile(join(root, "task.toml"), `[task]\nentrypoint = "run.sh"\n`);
  await Deno.writeTextFile(join(root, "run.sh"), "#!/bin/sh\n", { mode: 0o755 });
  for (const [name, size] of [["renders.bin", 3 * MiB], ["cache.bin", MiB]] as const) {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, i + 65536));
    await Deno.writeFile(join(root, name), bytes);
  }
}

Deno.test("loadPackage() zips a folder into a temporary file with the folder's digest, removed once disposed", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "job");
  await bigFolder(root);
  let progressed = 0;
  let file: string;
  {
    await using pkg = await loadPackage(root, { maxPackageBytes: 8 * MiB }, (n) => progressed = n);
    file = pkg.file;
    assert.equal(pkg.name, "job");
    assert.equal((await Deno.stat(file)).size, pkg.size);
    assert.equal(progressed, pkg.size);
    assert.equal(await sha256File(file), await sha256Digest(await zipFolder(root)));
  }
  await assert.rejects(Deno.stat(dirname(file)), Deno.errors.NotFound, "the temporary folder is gone");
});

Deno.test("loadPackage() refuses a folder over the unpacked limit before zipping, naming the limit and the biggest files", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "job");
  await bigFolder(root);
  let zipped = false;
  const e = await loadPackage(root, { maxPackageBytes: MiB, maxUnpackedBytes: 2 * MiB }, () => zipped = true)
    .then(() => null, (e) => e);
  assert.ok(e instanceof TooLargeError, String(e));
  assert.equal(e.code, "too_large_unpacked");
  assert.match(e.message, /limit of 2097152 bytes \(2\.0 MiB\)/);
  assert.match(e.message, /renders\.bin \(3\.0 MiB\), cache\.bin \(1\.0 MiB\)/);
  assert.match(e.message, /\.parallelicignore|data put/);
  assert.equal(zipped, false, "nothing was zipped");
});

Deno.test("loadPackage() stops zipping as soon as the zip passes the package limit, naming it and the biggest files", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "job");
  await bigFolder(root);
  let most = 0;
  const e = await loadPackage(root, { maxPackageBytes: 2 * MiB }, (n) => most = Math.max(most, n))
    .then(() => null, (e) => e);
  assert.ok(e instanceof TooLargeError, String(e));
  assert.equal(e.code, "package_too_large");
  assert.match(e.message, /package limit of 2097152 bytes \(2\.0 MiB, set by the manager's --max-package-size\)/);
  assert.match(e.message, /renders\.bin \(3\.0 MiB\)/);
  assert.ok(most <= 2 * MiB, `stopped at the limit, not after ${most} bytes`);
  // A folder that compresses under the limit is not refused for the size of its files.
  await Deno.writeTextFile(join(root, "renders.bin"), "a".repeat(3 * MiB));
  await Deno.remove(join(root, "cache.bin"));
  await using pkg = await loadPackage(root, { maxPackageBytes: 2 * MiB });
  assert.ok(pkg.size < MiB);
});
