import assert from "node:assert/strict";
import { join } from "node:path";
import { openBucket } from "../core/objects.ts";
import { outputObject, WORKSPACE_BUCKET } from "../core/schema.ts";
import { startTestNats, tempDir } from "../tests/kit/mod.ts";
import { collectOutputs, fetchWorkspace, storeOutputs } from "./outputs.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function write(path: string, text: string) {
  await Deno.mkdir(join(path, ".."), { recursive: true });
  await Deno.writeTextFile(path, text);
}

Deno.test("collectOutputs() takes the output folder and the globs' matches in the workdir, output folder first", async () => {
  await using dir = await tempDir();
  const out = join(dir.path, "out");
  const work = join(dir.path, "work");
  await write(join(out, "result.txt"), "from output");
  await write(join(out, "deep/x.bin"), "x");
  await write(join(work, "result.txt"), "from workdir");
  await write(join(work, "frames/001.png"), "png");
  await write(join(work, "frames/sub/002.png"), "png");
  await write(join(work, "notes.md"), "not matched");
  await Deno.symlink("/etc/hostname", join(work, "frames/link.png"));
  const found = await collectOutputs(out, work, ["frames/**", "result.txt"]);
  assert.deepEqual(found.map((s) => s.path).sort(), [
    "deep/x.bin",
    "frames/001.png",
    "frames/sub/002.png",
    "result.txt",
  ]);
  const result = found.find((s) => s.path === "result.txt")!;
  assert.equal(await new Response(await result.open()).text(), "from output");
  assert.deepEqual(await collectOutputs(join(dir.path, "missing"), work, []), []);
});

Deno.test({
  name: "collectOutputs() with the instance's uid takes its files only, also when one is swapped before it is read",
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  async fn() {
    await using dir = await tempDir();
    const out = join(dir.path, "out");
    const uid = 20120;
    await write(join(out, "mine.txt"), "mine");
    await Deno.chown(join(out, "mine.txt"), uid, uid);
    await Deno.symlink("/etc/hostname", join(out, "link.txt"));
    await write(join(out, "planted.txt"), "a file of root's");
    await assert.rejects(
      collectOutputs(out, dir.path, [], uid),
      /Cannot store output 'planted\.txt' as it is not the instance's own file \(owner uid 0, not 20120\)/,
    );
    await Deno.remove(join(out, "planted.txt"));
    const found = await collectOutputs(out, dir.path, [], uid);
    assert.deepEqual(found.map((s) => s.path), ["mine.txt"], "symlinks are never followed");
    // Between the walk and the read, a process of the instance swaps its file for a link to one it cannot read.
    await write(join(dir.path, "secret"), "the node's");
    await Deno.remove(join(out, "mine.txt"));
    await Deno.symlink(join(dir.path, "secret"), join(out, "mine.txt"));
    await assert.rejects(async () => await found[0].open(), /not the instance's own file \(owner uid 0, not 20120\)/);
    assert.equal((await collectOutputs(out, dir.path, [])).length, 0, "without a uid: symlinks skipped as before");
  },
});

Deno.test({
  name: "storeOutputs() keeps the latest attempt's outputs, and fetchWorkspace() lays them out per instance",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using dir = await tempDir();
    const bucket = await openBucket(nats.nc, WORKSPACE_BUCKET, { create: true });
    const task = "t0000000000abcdef";
    const text = (path: string, content: string) => {
      const bytes = new TextEncoder().encode(content);
      return { path, size: bytes.byteLength, open: () => ReadableStream.from([bytes]) };
    };
    assert.equal(await storeOutputs(bucket, task, 0, 0, []), 0, "nothing to store, nothing looked up");
    assert.ok((await storeOutputs(bucket, task, 0, 1, [text("r.txt", "attempt 1")])) > 0);
    assert.equal(
      await storeOutputs(bucket, task, 0, 0, [text("r.txt", "stale attempt 0")]),
      0,
      "older attempt ignored",
    );
    await storeOutputs(bucket, task, 2, 0, [text("r.txt", "two"), text("a/b.txt", "deep")]);
    await storeOutputs(bucket, task, 3, 0, [text("r.txt", "three")]);
    assert.equal(await storeOutputs(bucket, task, 3, 1, []), 0);
    assert.equal(await bucket.info(outputObject(task, 3)), null, "a retry without outputs removes the earlier ones");

    const ws = join(dir.path, "ws");
    assert.equal(await fetchWorkspace(bucket, task, 4, ws), 3);
    assert.equal(await Deno.readTextFile(join(ws, "0/r.txt")), "attempt 1");
    assert.equal(await Deno.readTextFile(join(ws, "2/a/b.txt")), "deep");
    await assert.rejects(Deno.stat(join(ws, "1")), "no folder for an instance without outputs");
    await assert.rejects(Deno.stat(join(ws, "3")));
  },
});
