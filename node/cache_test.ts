import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/harness.ts";
import { copyTree, SMALL_TREE } from "./cache.ts";

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
