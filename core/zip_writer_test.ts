import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { listFolder, zipEntries, zipEntriesWithZipJs } from "./package_zip.ts";
import { unpackPackage } from "./package.ts";
import { fitsWithoutZip64 } from "./zip_writer.ts";

const KiB = 1024;

/** Bytes of `size`: random (deflate cannot shrink them) or text (it can), reproducible from `seed`. */
function bytesOf(size: number, seed: number, random: boolean): Uint8Array {
  const out = new Uint8Array(size);
  let x = (seed + 1) * 2654435761 >>> 0;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = random ? x >>> 24 : 97 + ((i * 7 + (x >>> 29)) % 11);
  }
  return out;
}

/** Zips `root` both ways; returns both zips. */
async function bothZips(root: string): Promise<[Uint8Array, Uint8Array]> {
  const entries = await listFolder(root);
  const zipped = async (zip: typeof zipEntries) => {
    const chunks: Uint8Array[] = [];
    await zip(root, entries, new WritableStream({ write: (c) => void chunks.push(c.slice()) }));
    return new Uint8Array(await new Blob(chunks as Uint8Array<ArrayBuffer>[]).arrayBuffer());
  };
  return [await zipped(zipEntries), await zipped(zipEntriesWithZipJs)];
}

Deno.test("zipEntries() writes the bytes zip.js writes: sizes about its 256 KiB pieces, names, modes, links", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "task");
  await Deno.mkdir(join(root, "sub", "empty dir"), { recursive: true });
  await Deno.mkdir(join(root, "ünïcode"));
  const sizes = [0, 1, 100, 64 * KiB, 256 * KiB - 1, 256 * KiB, 256 * KiB + 1, 512 * KiB, 512 * KiB + 1, 1300 * KiB];
  for (const [i, size] of sizes.entries()) {
    await Deno.writeFile(join(root, `random-${size}`), bytesOf(size, i, true), { mode: i % 2 ? 0o755 : 0o644 });
    await Deno.writeFile(join(root, "sub", `text-${size}.txt`), bytesOf(size, i, false));
  }
  await Deno.writeTextFile(join(root, "ünïcode", "naïve café.txt"), "é\n");
  await Deno.writeTextFile(join(root, "task.toml"), `[task]\nentrypoint = "random-1"\n`);
  await Deno.symlink("sub/text-100.txt", join(root, "link"));
  await Deno.symlink("ünïcode/naïve café.txt", join(root, "link-ü"));
  const [ours, zipJs] = await bothZips(root);
  assert.ok(ours.byteLength > 1300 * KiB, `a zip of ${ours.byteLength} bytes`);
  assert.equal(ours.byteLength, zipJs.byteLength);
  assert.deepEqual(ours, zipJs);
  // And it unpacks to what was zipped.
  const out = join(dir.path, "out");
  await unpackPackage(ours, out, null);
  assert.deepEqual(await Deno.readFile(join(out, "sub", `text-${1300 * KiB}.txt`)), bytesOf(1300 * KiB, 9, false));
  assert.equal(await Deno.readLink(join(out, "link-ü")), "ünïcode/naïve café.txt");
  assert.equal(((await Deno.stat(join(out, "random-1"))).mode ?? 0) & 0o777, 0o755);
});

Deno.test("zipEntries() writes an empty folder, and a name with a control character, as zip.js does", async () => {
  await using dir = await tempDir();
  const [ours, zipJs] = await bothZips(dir.path);
  assert.deepEqual(ours, zipJs);
  assert.equal(ours.byteLength, 22);
  // Not printable ASCII: zip.js sets the UTF-8 flag for it (the manager refuses such a name, but says why).
  await Deno.writeTextFile(join(dir.path, "tab\tname"), "x");
  const [withTab, withTabZipJs] = await bothZips(dir.path);
  assert.deepEqual(withTab, withTabZipJs);
  assert.equal(new DataView(withTab.buffer).getUint16(6, true), 0x0808);
});

Deno.test("fitsWithoutZip64() leaves a package that may need Zip64 to zip.js", () => {
  assert.equal(fitsWithoutZip64(10, 2 ** 30, 100), true);
  assert.equal(fitsWithoutZip64(10, 2 ** 32 - 2 ** 20, 100), false, "deflate may grow data past 4 GiB");
  assert.equal(fitsWithoutZip64(0xffff, 0, 0), false, "65,535 entries need Zip64");
});

Deno.test("zipEntries() fails, and fails its output, when a file changed size after it was listed", async () => {
  await using dir = await tempDir();
  await Deno.writeTextFile(join(dir.path, "a.txt"), "short");
  const entries = await listFolder(dir.path);
  await Deno.writeTextFile(join(dir.path, "a.txt"), "longer than it was");
  const pipe = new TransformStream<Uint8Array, Uint8Array>();
  const read = new Response(pipe.readable).arrayBuffer();
  await assert.rejects(zipEntries(dir.path, entries, pipe.writable), /Cannot zip 'a.txt' as it changed size/);
  await assert.rejects(read, /changed size/, "what reads the zip hears of it rather than waiting");
});
