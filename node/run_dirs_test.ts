import assert from "node:assert/strict";
import { join } from "node:path";
import { createLogger } from "../core/log.ts";
import { systemClock } from "../core/clock.ts";
import { loadLibc } from "./libc.ts";
import { createSpawner } from "./spawn.ts";
import { createRunDirs, type RunDirs } from "./run_dirs.ts";

const libc = loadLibc();

/** A package root with a file, a script, a folder with a file, and a symlink. */
async function setUp(spare = 4): Promise<{ root: string; work: string; dirs: RunDirs }> {
  const root = await Deno.makeTempDir({ prefix: "parallelic-root-" });
  await Deno.writeTextFile(join(root, "task.toml"), "entrypoint = 'run.sh'\n");
  await Deno.writeTextFile(join(root, "run.sh"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
  await Deno.mkdir(join(root, "sub"));
  await Deno.writeTextFile(join(root, "sub", "data.txt"), "1 2 3\n");
  await Deno.symlink("sub/data.txt", join(root, "link"));
  const work = await Deno.makeTempDir({ prefix: "parallelic-runs-" });
  return {
    root,
    work,
    dirs: createRunDirs({ dir: work, libc, runAs: null, spare, log: createLogger({ level: "error" }) }),
  };
}

const exists = (path: string) => Deno.lstat(path).then(() => true, () => false);

if (libc) {
  Deno.test("run dirs: an untouched copy is handed to the next instance of the package", async () => {
    const { root, work, dirs } = await setUp();
    const a = await dirs.take(root);
    assert.equal(a.reused, false);
    assert.equal(await Deno.readTextFile(join(a.dir, "sub", "data.txt")), "1 2 3\n");
    assert.equal((await Deno.stat(join(a.dir, "run.sh"))).mode! & 0o777, 0o755);
    assert.equal(await Deno.readLink(join(a.dir, "link")), "sub/data.txt");
    assert.deepEqual([...Deno.readDirSync(a.outputDir)], []);
    // Reading, and writing outputs that were stored and removed, leave it reusable.
    await Deno.readTextFile(join(a.dir, "sub", "data.txt"));
    await Deno.writeTextFile(join(a.outputDir, "result.txt"), "x");
    await Deno.remove(join(a.outputDir, "result.txt"));
    assert.equal(dirs.unchanged(a), true);
    dirs.release(a, true);
    const b = await dirs.take(root);
    assert.equal(b.dir, a.dir);
    assert.equal(b.reused, true);
    assert.deepEqual(dirs.counts, { made: 1, reused: 1 });
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  });

  const changes: Array<[string, (dir: string, out: string) => Promise<void>]> = [
    [
      "a file written at once (within the same clock tick as the copy)",
      (d) => Deno.writeTextFile(join(d, "task.toml"), "entrypoint = 'run.sh'\n"),
    ],
    ["a file appended to", (d) => Deno.writeTextFile(join(d, "sub", "data.txt"), "4\n", { append: true })],
    ["a new file in a folder", (d) => Deno.writeTextFile(join(d, "sub", "new.txt"), "")],
    ["a file removed", (d) => Deno.remove(join(d, "task.toml"))],
    ["a file renamed", (d) => Deno.rename(join(d, "task.toml"), join(d, "task2.toml"))],
    ["a mode changed", (d) => Deno.chmod(join(d, "run.sh"), 0o644)],
    ["a symlink replaced", async (d) => {
      await Deno.remove(join(d, "link"));
      await Deno.symlink("task.toml", join(d, "link"));
    }],
    ["a file replaced by one of the same size", async (d) => {
      await Deno.writeTextFile(join(d, "tmp"), "9 9 9\n");
      await Deno.rename(join(d, "tmp"), join(d, "sub", "data.txt"));
    }],
    ["an output left in the output folder", (_d, out) => Deno.writeTextFile(join(out, "left.txt"), "")],
    ["a file changed and its modification time set back to what it was", async (d) => {
      const path = join(d, "sub", "data.txt");
      const before = libc!.stamp(path)!;
      await Deno.writeTextFile(path, "3 2 1\n");
      libc!.setMtime(path, before.mtimeSec, before.mtimeNs);
    }],
  ];
  for (const [what, change] of changes) {
    Deno.test(`run dirs: a copy is removed, not reused, after ${what}`, async () => {
      const { root, work, dirs } = await setUp();
      const a = await dirs.take(root);
      await change(a.dir, a.outputDir);
      // What the runner asks before it looks for files written in the wrong place.
      assert.equal(dirs.unchanged(a), false);
      dirs.release(a, true);
      const b = await dirs.take(root);
      assert.notEqual(b.dir, a.dir);
      assert.equal(b.reused, false);
      assert.equal(await Deno.readTextFile(join(b.dir, "task.toml")), "entrypoint = 'run.sh'\n");
      // Removal runs in the background.
      for (let i = 0; i < 50 && await exists(a.dir); i++) await new Promise((r) => setTimeout(r, 10));
      assert.equal(await exists(a.dir), false);
      assert.equal(await exists(a.outputDir), false);
      await Deno.remove(root, { recursive: true });
      await Deno.remove(work, { recursive: true });
    });
  }

  Deno.test("run dirs: a copy whose escaped process wrote after its instance ended is not handed on", async () => {
    const { root, work, dirs } = await setUp();
    const spawner = createSpawner({ libc, clock: systemClock, outputPollMs: 20 });
    const decoder = new TextDecoder();
    const mark = join(work, "escaped"); // Outside the copy: a new file inside would make it changed.
    const run = async (script: string) => {
      const runDir = await dirs.take(root);
      const out: string[] = [];
      const proc = await spawner.start({
        command: "/bin/sh",
        args: ["-c", script],
        cwd: runDir.dir,
        env: { PATH: "/usr/bin:/bin", MARK: mark },
        stdoutPath: runDir.stdoutPath,
        stderrPath: runDir.stderrPath,
        onOutput: (c) => void out.push(decoder.decode(c)),
      });
      const status = await proc.ended;
      dirs.release(runDir, !status.leftovers);
      return { runDir, out: out.join(""), leftovers: status.leftovers };
    };
    // It leaves its process group (setsid) before the main process ends: no leftover, so the copy is kept...
    const first = await run(
      `setsid sh -c 'touch "$MARK"; sleep 0.2; echo late-from-first; echo x > late.txt' & ` +
        `while [ ! -e "$MARK" ]; do sleep 0.01; done; echo first`,
    );
    assert.equal(first.leftovers, false);
    assert.equal(first.out, "first\n");
    // ...but it writes into its output file and its folder later: the next instance gets a new copy.
    await new Promise((r) => setTimeout(r, 600));
    const second = await run("echo second; ls");
    assert.notEqual(second.runDir.dir, first.runDir.dir);
    assert.equal(second.runDir.reused, false);
    assert.doesNotMatch(second.out, /late/);
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  });

  Deno.test("run dirs: an output left right after a run that left the output folder empty is noticed", async () => {
    const { root, work, dirs } = await setUp();
    const a = await dirs.take(root);
    await Deno.writeTextFile(join(a.outputDir, "stored-and-removed.txt"), "");
    await Deno.remove(join(a.outputDir, "stored-and-removed.txt"));
    dirs.release(a, true);
    const b = await dirs.take(root);
    assert.equal(b.dir, a.dir);
    // At once, within the clock tick of the check above: the folder's time must still change.
    await Deno.writeTextFile(join(b.outputDir, "left.txt"), "");
    dirs.release(b, true);
    const c = await dirs.take(root);
    assert.notEqual(c.dir, a.dir);
    assert.deepEqual([...Deno.readDirSync(c.outputDir)], []);
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  });

  Deno.test("run dirs: a kept copy changed before it is taken again is removed, not handed on", async () => {
    const { root, work, dirs } = await setUp();
    const a = await dirs.take(root);
    dirs.release(a, true);
    await Deno.writeTextFile(join(a.dir, "task.toml"), "changed after its instance ended\n");
    const b = await dirs.take(root);
    assert.notEqual(b.dir, a.dir);
    assert.equal(await Deno.readTextFile(join(b.dir, "task.toml")), "entrypoint = 'run.sh'\n");
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  });

  Deno.test("run dirs: not reusable (killed, leftovers) means removed; spare copies are capped", async () => {
    const { root, work, dirs } = await setUp(1);
    const a = await dirs.take(root);
    dirs.release(a, false);
    const [b, c] = [await dirs.take(root), await dirs.take(root)];
    dirs.release(b, true);
    dirs.release(c, true); // Over the cap of one spare: removed.
    const d = await dirs.take(root);
    assert.equal(d.dir, b.dir);
    const e = await dirs.take(root);
    assert.ok(![a.dir, b.dir, c.dir].includes(e.dir));
    assert.deepEqual(dirs.counts, { made: 4, reused: 1 });
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  });
} else {
  Deno.test("run dirs: reuse skipped as the C library cannot be loaded here", async () => {
    const { root, work, dirs } = await setUp();
    const a = await dirs.take(root);
    dirs.release(a, true);
    assert.equal((await dirs.take(root)).reused, false);
    await Deno.remove(root, { recursive: true });
    await Deno.remove(work, { recursive: true });
  });
}
