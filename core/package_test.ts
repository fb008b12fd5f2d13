import assert from "node:assert/strict";
import { join } from "node:path";
import { makeZip, tempDir } from "../tests/kit/mod.ts";
import { rawZip } from "../tests/raw_zip.ts";
import { TooLargeError, ValidationError } from "./errors.ts";
import {
  checkPackage,
  checkPackageFile,
  DEFAULT_PACKAGE_LIMITS,
  readPackageInputs,
  sha256Digest,
  unpackPackage,
  unpackPackageFile,
} from "./package.ts";
import { zipFolder } from "./package_zip.ts";
import { countEntries } from "./zip_source.ts";

const TOML = `[task]\nentrypoint = "run.sh"\ninstances = 2\n`;

async function rejects(bytes: Uint8Array, pattern: RegExp, code?: string) {
  try {
    await checkPackage(bytes);
  } catch (e) {
    assert.ok(e instanceof ValidationError || e instanceof TooLargeError, String(e));
    assert.match(e.message, pattern);
    if (code) assert.equal(e.code, code);
    return;
  }
  assert.fail("expected the package to be rejected");
}

Deno.test("checkPackage() accepts a valid package and digests it", async () => {
  const bytes = await makeZip({ "task.toml": TOML, "run.sh": "#!/bin/sh\necho hi\n" });
  const checked = await checkPackage(bytes, "demo");
  assert.match(checked.digest, /^sha256-[0-9a-f]{64}$/);
  assert.equal(checked.spec.name, "demo");
  assert.equal(checked.spec.instances, 2);
  assert.equal(checked.entries, 2);
  assert.equal((await checkPackage(bytes)).digest, checked.digest);
});

Deno.test("checkPackage() accepts a package that is only a task.toml running a command", async () => {
  const checked = await checkPackage(await makeZip({ "task.toml": `[task]\ncommand = "echo hi"\ninstances = 3\n` }));
  assert.equal(checked.entries, 1);
  assert.equal(checked.spec.command, "echo hi");
  assert.equal(checked.spec.entrypoint, null);
});

Deno.test("checkPackage() tells a missing bare entrypoint to be a command", async () => {
  await rejects(
    await makeZip({ "task.toml": `[task]\nentrypoint = "python3"\n` }),
    /entrypoint 'python3' is not a file in the package; to run a program the node has, write command = "python3 …"/,
    "missing_entrypoint",
  );
});

Deno.test("checkPackage() counts the instances of [task] inputs from the file in the zip; readPackageInputs reads it", async () => {
  const jobs = Array.from({ length: 10_000 }, (_, i) => `frame-${i}.exr`).join("\n") + "\n";
  const bytes = await makeZip({ "task.toml": `[task]\ncommand = "x"\ninputs = "jobs.txt"\n`, "jobs.txt": jobs });
  const checked = await checkPackage(bytes);
  assert.equal(checked.spec.instances, 10_000);
  assert.ok(JSON.stringify(checked.spec).length < 1000, "the rows are not in the spec");
  const rows = await readPackageInputs(bytes, checked.spec.inputs!);
  assert.equal(rows.rows[9999], "frame-9999.exr");
  await rejects(
    await makeZip({ "task.toml": `[task]\ncommand = "x"\ninputs = "runs.csv"\n` }),
    /inputs 'runs.csv' is not a file in the package/,
    "missing_inputs",
  );
  await rejects(
    await makeZip({ "task.toml": `[task]\ncommand = "x"\ninputs = "runs.csv"\n`, "runs.csv": "a,b\n1,2\n3\n" }),
    /task.toml: inputs 'runs.csv' line 3: has 1 fields, the header has 2/,
    "invalid_inputs",
  );
});

Deno.test("checkPackage() strips a single top-level folder", async () => {
  const bytes = await makeZip({ "hello/task.toml": TOML, "hello/run.sh": "#!/bin/sh\n" });
  assert.equal((await checkPackage(bytes)).spec.entrypoint, "run.sh");
});

Deno.test("checkPackage() rejects broken and hostile packages, naming the problem", async () => {
  await rejects(new TextEncoder().encode("not a zip at all"), /not a readable zip/, "broken_zip");
  await rejects(await makeZip({ "run.sh": "#!/bin/sh\n" }), /no task.toml/, "missing_task_toml");
  await rejects(
    await makeZip({ "task.toml": TOML, "run.sh": "x", "../evil": "x" }),
    /entry '..\/evil' escapes the task root/,
    "path_escapes_root",
  );
  await rejects(await makeZip({ "task.toml": TOML, "run.sh": "x", "/etc/passwd": "x" }), /absolute path/);
  await rejects(
    await makeZip({ "task.toml": TOML, "run.sh": "x", "link": { content: "../../etc", symlink: true } }),
    /symlink to '..\/..\/etc', outside the task root/,
    "symlink_escapes_root",
  );
  await rejects(await makeZip({ "task.toml": `[task]\nentrypoint = "../x"\n` }), /leaves the task root/);
  await rejects(
    await makeZip({ "task.toml": `[task]\nentrypoint = "nope.sh"\n` }),
    /entrypoint 'nope.sh' is not a file/,
  );
  await rejects(await makeZip({ "task.toml": TOML + "colour = 1\n", "run.sh": "x" }), /unknown key 'task.colour'/);
  await rejects(await makeZip({ "task.toml": TOML, "run.sh": "x", "./run.sh": "y" }), /appears twice/);
});

Deno.test("checkPackage() refuses a package over the size limit and zip bombs", async () => {
  const bytes = await makeZip({ "task.toml": TOML, "run.sh": "x" });
  await assert.rejects(
    checkPackage(bytes, "t", { ...DEFAULT_PACKAGE_LIMITS, maxPackageBytes: 10 }),
    (e: Error) => e instanceof TooLargeError && /exceeds the limit of 10 bytes/.test(e.message),
  );
  const bomb = await makeZip({ "task.toml": TOML, "run.sh": "x", "zeros": "0".repeat(8 * 2 ** 20) });
  await assert.rejects(checkPackage(bomb), /zip bomb/);
});

Deno.test("unpackPackage() writes files with modes and refuses to escape", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  const bytes = await makeZip({
    "task.toml": TOML,
    "run.sh": { content: "#!/bin/sh\necho hi\n", mode: 0o644 },
    "data/a.txt": "a",
    "data/link": { content: "a.txt", symlink: true },
  });
  await unpackPackage(bytes, join(dir, "root"), "run.sh");
  assert.equal((await Deno.stat(join(dir, "root/run.sh"))).mode! & 0o111, 0o111, "entrypoint made executable");
  assert.equal(await Deno.readTextFile(join(dir, "root/data/link")), "a");
  const evil = await makeZip({ "task.toml": TOML, "run.sh": "x", "../escaped": "x" });
  await assert.rejects(unpackPackage(evil, join(dir, "evil"), "run.sh"), /escapes the task root/);
  await assert.rejects(Deno.stat(join(dir, "escaped")), Deno.errors.NotFound);
});

Deno.test("zipFolder() round-trips a folder, keeping modes and leaving out .git", async () => {
  await using tmp = await tempDir();
  const dir = tmp.path;
  await Deno.mkdir(join(dir, ".git"));
  await Deno.writeTextFile(join(dir, ".git/HEAD"), "ref");
  await Deno.writeTextFile(join(dir, "task.toml"), TOML);
  await Deno.writeTextFile(join(dir, "run.sh"), "#!/bin/sh\n", { mode: 0o755 });
  await Deno.writeTextFile(join(dir, "skip.log"), "x");
  const bytes = await zipFolder(dir, (p) => p.endsWith(".log"));
  const checked = await checkPackage(bytes);
  assert.equal(checked.entries, 2);
  await unpackPackage(bytes, join(dir, "out"), null);
  assert.equal((await Deno.stat(join(dir, "out/run.sh"))).mode! & 0o777, 0o755);
});

Deno.test("countEntries() stops reading a directory of a million entries right after the limit", async () => {
  const { rawZip } = await import("../tests/raw_zip.ts");
  const bytes = await rawZip([{ name: "task.toml", data: TOML }, { name: "x" }], { centralCopies: 500_000 });
  assert.equal(await countEntries(bytes, 100_000), 100_001);
  assert.equal(await countEntries(bytes, 2_000_000), 1_000_000);
  await rejects(bytes, /it has 100001 entries, more than the limit of 100000/, "too_many_entries");
});

Deno.test("checkPackage: the same bytes are checked once; callers get their own copies; the name still counts", async () => {
  const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\n" });
  const limits = { ...DEFAULT_PACKAGE_LIMITS };
  const first = await checkPackage(zip, "one", limits);
  first.spec.instances = 99; // A caller changing its result must not change the next one's.
  const again = await checkPackage(zip, "one", limits);
  assert.equal(again.spec.instances, 1);
  assert.equal(again.digest, first.digest);
  assert.equal((await checkPackage(zip, "two", limits)).spec.name, "two");
  // A broken package is never remembered as good, and a good one does not hide a smaller limit.
  await assert.rejects(checkPackage(zip, "one", { ...limits, maxPackageBytes: 10 }), TooLargeError);
});

Deno.test("checkPackage refuses a zip whose local header disagrees with its central directory (as unpacking would)", async () => {
  const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\n" });
  const view = new DataView(zip.buffer, zip.byteOffset, zip.byteLength);
  // Each local header starts with PK\x03\x04: say "stored" (offset 8) where the central directory says "deflated".
  let changed = 0;
  for (let at = 0; at + 30 < zip.byteLength; at++) {
    if (view.getUint32(at, true) === 0x04034b50 && view.getUint16(at + 8, true) === 8) {
      view.setUint16(at + 8, 0, true);
      changed++;
    }
  }
  assert.ok(changed > 0, "the zip has deflated entries");
  await assert.rejects(checkPackage(zip, "ambiguous"), ValidationError);
});

// The check's fast path reads an entry only when its local header agrees with the central directory; else zip.js
// decides, as it does at unpack. Whatever field disagrees, both must come to the same verdict and the same bytes.
Deno.test("checkPackage and unpackPackage agree on a task.toml whose local header disagrees in any one field", async () => {
  await using dir = await tempDir();
  const toml = `[task]\nentrypoint = "run.sh"\ninstances = 3\n`;
  // Written without data descriptors, with CRC and sizes in the local headers: what the fast path reads.
  const original = await rawZip([
    { name: "task.toml", data: toml, deflate: true },
    { name: "run.sh", data: "#!/bin/sh\n", mode: 0o100755 },
  ]);
  const header = 0; // task.toml's local header comes first.
  const view0 = new DataView(original.buffer, original.byteOffset, original.byteLength);
  assert.equal(view0.getUint32(header, true), 0x04034b50);
  assert.equal(view0.getUint16(header + 6, true) & 0x08, 0, "no data descriptor");
  assert.notEqual(view0.getUint32(header + 14, true), 0, "the CRC is in the local header");
  assert.equal((await checkPackage(original, "clean")).spec.instances, 3);
  const cases: Record<string, (v: DataView) => void> = {
    "data descriptor flag": (v) => v.setUint16(header + 6, v.getUint16(header + 6, true) | 0x08, true),
    "method": (v) => v.setUint16(header + 8, 0, true),
    "crc": (v) => v.setUint32(header + 14, v.getUint32(header + 14, true) ^ 1, true),
    "compressed size": (v) => v.setUint32(header + 18, v.getUint32(header + 18, true) + 1, true),
    "uncompressed size": (v) => v.setUint32(header + 22, v.getUint32(header + 22, true) + 1, true),
  };
  for (const [field, corrupt] of Object.entries(cases)) {
    const zip = original.slice();
    corrupt(new DataView(zip.buffer));
    const checked = await checkPackage(zip, field).then((c) => c, (e: Error) => e);
    const out = join(dir.path, field.replaceAll(" ", "-"));
    const unpacked = await unpackPackage(zip, out, null).then(() => true, (e: Error) => e);
    // The fast path of the check never accepts what unpacking refuses, nor reads other bytes than it writes.
    assert.equal(
      checked instanceof Error,
      unpacked instanceof Error,
      `${field}: check ${checked instanceof Error ? `refused (${checked.message})` : "accepted"}, unpack ${
        unpacked instanceof Error ? `refused (${unpacked.message})` : "accepted"
      }`,
    );
    if (!(checked instanceof Error)) {
      assert.equal(await Deno.readTextFile(join(out, "task.toml")), toml, field);
      assert.equal(checked.spec.instances, 3, field);
    }
  }
});

Deno.test("sha256Digest() gives the same digest below and above its 1 MiB switch (node:crypto, crypto.subtle)", async () => {
  const { createHash } = await import("node:crypto");
  for (const size of [0, 1024 * 1024, 1024 * 1024 + 1, 3 * 1024 * 1024 + 7]) {
    const bytes = new Uint8Array(size);
    for (let i = 0; i < size; i += 65536) crypto.getRandomValues(bytes.subarray(i, Math.min(size, i + 65536)));
    // A view into a larger buffer: only its own bytes count.
    const padded = new Uint8Array(size + 32);
    padded.set(bytes, 16);
    const view = padded.subarray(16, 16 + size);
    const expected = `sha256-${createHash("sha256").update(bytes).digest("hex")}`;
    assert.equal(await sha256Digest(bytes), expected, `${size} bytes`);
    assert.equal(await sha256Digest(view), expected, `${size} bytes in a larger buffer`);
  }
});

Deno.test("checkPackage inflates every file once: a large entry that lies about its size is refused as it streams", async () => {
  const limits = { ...DEFAULT_PACKAGE_LIMITS, maxRatio: 1e9 };
  const ok = [{ name: "task.toml", data: TOML }, { name: "run.sh", data: "#!/bin/sh\n", mode: 0o100755 }];
  // Past 16 MiB declared, the entry streams through zip.js rather than one capped inflate.
  const lying = await rawZip([...ok, {
    name: "big.bin",
    data: new Uint8Array(40 * 2 ** 20),
    deflate: true,
    declaredSize: 20 * 2 ** 20,
  }]);
  await assert.rejects(
    checkPackage(lying, "t", limits),
    (e: ValidationError) =>
      e.code === "zip_bomb" && /entry 'big.bin' unpacks to more than the 20971520 bytes it declares/.test(e.message),
  );
  const honest = await rawZip([...ok, { name: "big.bin", data: new Uint8Array(20 * 2 ** 20), deflate: true }]);
  assert.equal((await checkPackage(honest, "t", limits)).unpackedBytes, 20 * 2 ** 20 + TOML.length + 10);
});

Deno.test("checkPackageFile and unpackPackageFile, reading a zip in place on disk, judge every hostile case as from memory", async () => {
  const { hostileCorpus } = await import("../tests/hostile_corpus.ts");
  await using dir = await tempDir();
  const outside = join(dir.path, "outside", "pwned");
  const corpus = await hostileCorpus(outside);
  const verdict = (p: Promise<unknown>) => p.then(() => "accepted", (e: ValidationError) => `${e.name} ${e.code}`);
  for (const [i, c] of corpus.entries()) {
    const file = join(dir.path, `${i}.zip`);
    await Deno.writeFile(file, c.bytes);
    const fromFile = await verdict(checkPackageFile(file, "hostile"));
    assert.equal(fromFile, await verdict(checkPackage(c.bytes, "hostile")), c.what);
    assert.match(fromFile, new RegExp(` ${c.code}$`), c.what);
    if (c.tomlOnly) continue;
    const unpacked = await verdict(unpackPackageFile(file, join(dir.path, "file", String(i)), "run.sh"));
    assert.notEqual(unpacked, "accepted", c.what);
    assert.equal(unpacked, await verdict(unpackPackage(c.bytes, join(dir.path, "mem", String(i)), "run.sh")), c.what);
  }
  await assert.rejects(Deno.stat(outside), Deno.errors.NotFound, "nothing was written outside");
  // A good package reads the same from a file, with the digest computed from the file.
  const good = await makeZip({ "task.toml": TOML, "run.sh": "#!/bin/sh\necho hi\n", "big.bin": "x".repeat(300_000) });
  await Deno.writeFile(join(dir.path, "good.zip"), good);
  const fromFile = await checkPackageFile(join(dir.path, "good.zip"), "good");
  assert.deepEqual(fromFile, await checkPackage(good, "good"));
  await unpackPackageFile(join(dir.path, "good.zip"), join(dir.path, "good"), "run.sh");
  assert.equal((await Deno.readTextFile(join(dir.path, "good", "big.bin"))).length, 300_000);
});
