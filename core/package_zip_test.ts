import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { checkPackage, sha256Digest, unpackPackage } from "./package.ts";
import { listFolder, zipFolder } from "./package_zip.ts";

/** A task folder with a subfolder, an executable, a plain file and a symlink. */
async function makeFolder(root: string) {
  await Deno.mkdir(join(root, "src", "empty"), { recursive: true });
  await Deno.writeTextFile(join(root, "task.toml"), `[task]\nentrypoint = "run.sh"\n`);
  await Deno.writeTextFile(join(root, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  await Deno.writeTextFile(join(root, "src", "b.txt"), "bee");
  await Deno.writeTextFile(join(root, "src", "a.txt"), "ay");
  await Deno.symlink("src/a.txt", join(root, "link"));
}

/** Sets every entry's modification time to `sec` (links themselves keep theirs: Deno.utime follows them). */
async function touchAll(root: string, sec: number) {
  for (const e of await listFolder(root)) if (e.kind !== "symlink") await Deno.utime(join(root, e.path), sec, sec);
}

const digestOf = async (root: string) => await sha256Digest(await zipFolder(root));

Deno.test("zipFolder() gives the same digest for the same folder zipped at other times, with other mtimes", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "task");
  await makeFolder(root);
  await touchAll(root, 1_000_000_000);
  const first = await digestOf(root);
  await new Promise((r) => setTimeout(r, 2100)); // Past the 2 s grain of a zip's MS-DOS time.
  await touchAll(root, 1_700_000_000);
  assert.equal(await digestOf(root), first, "another mtime, another moment: the same digest");
  // A copy made elsewhere, its files written in another order, with another umask's modes, is the same folder.
  const copy = join(dir.path, "copy");
  await Deno.mkdir(join(copy, "src", "empty"), { recursive: true });
  await Deno.writeTextFile(join(copy, "src", "a.txt"), "ay", { mode: 0o600 });
  await Deno.writeTextFile(join(copy, "src", "b.txt"), "bee", { mode: 0o664 });
  await Deno.symlink("src/a.txt", join(copy, "link"));
  await Deno.writeTextFile(join(copy, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o700 });
  await Deno.writeTextFile(join(copy, "task.toml"), `[task]\nentrypoint = "run.sh"\n`);
  assert.equal(await digestOf(copy), first, "only whether a file is executable counts of its mode");
  const checked = await checkPackage(await zipFolder(root));
  assert.equal(checked.digest, first);
  assert.equal(checked.entries, 7);
});

Deno.test("zipFolder() gives another digest when a byte, a name, an execute bit or a link target changes", async () => {
  await using dir = await tempDir();
  const root = join(dir.path, "task");
  await makeFolder(root);
  const seen = new Set([await digestOf(root)]);
  const changes: Array<[string, () => Promise<void>]> = [
    ["a byte", () => Deno.writeTextFile(join(root, "src", "b.txt"), "bed")],
    ["an execute bit", () => Deno.chmod(join(root, "src", "b.txt"), 0o755)],
    ["a name", () => Deno.rename(join(root, "src", "b.txt"), join(root, "src", "c.txt"))],
    ["a link target", async () => {
      await Deno.remove(join(root, "link"));
      await Deno.symlink("src/c.txt", join(root, "link"));
    }],
    ["an empty folder", () => Deno.mkdir(join(root, "src", "empty2"))],
  ];
  for (const [what, change] of changes) {
    await change();
    const digest = await digestOf(root);
    assert.ok(!seen.has(digest), `${what} changed, the digest did not`);
    seen.add(digest);
  }
  // And what was zipped unpacks to what the folder holds.
  await unpackPackage(await zipFolder(root), join(dir.path, "out"), "run.sh");
  assert.equal(await Deno.readTextFile(join(dir.path, "out", "src", "c.txt")), "bed");
  assert.equal((await Deno.stat(join(dir.path, "out", "src", "c.txt"))).mode! & 0o777, 0o755);
  assert.equal(await Deno.readLink(join(dir.path, "out", "link")), "src/c.txt");
});
