import assert from "node:assert/strict";
import { join } from "node:path";
import { filesWrittenSince, outputHint } from "./output_hint.ts";

Deno.test("filesWrittenSince() names new files, not the package's, not older ones, not what a glob stored", async () => {
  const work = await Deno.makeTempDir();
  const pkg = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(join(work, "old.txt"), "");
    await Deno.utime(join(work, "old.txt"), 1, 1);
    const since = Date.now();
    await Deno.writeTextFile(join(pkg, "scene.blend"), "");
    await Deno.writeTextFile(join(work, "scene.blend"), "changed");
    await Deno.mkdir(join(work, "frames"));
    await Deno.writeTextFile(join(work, "frames", "a.png"), "");
    await Deno.writeTextFile(join(work, "log.csv"), "");
    await Deno.writeTextFile(join(work, "stored.dat"), "");
    assert.deepEqual(await filesWrittenSince(work, since, pkg, ["*.dat"]), ["frames/a.png", "log.csv"]);
    assert.deepEqual(await filesWrittenSince(join(work, "missing"), since, pkg, []), []);
  } finally {
    await Deno.remove(work, { recursive: true });
    await Deno.remove(pkg, { recursive: true });
  }
});

Deno.test("outputHint() names three files at most, and the fix", () => {
  assert.equal(outputHint([]), null);
  const hint = outputHint(["a", "b", "c", "d", "e"])!;
  assert.match(hint, /wrote 'a', 'b', 'c' and 2 more in its workdir: write them under \$PARALLELIC_OUTPUT/);
  assert.ok(outputHint(["x".repeat(1000)])!.length <= 400);
});
