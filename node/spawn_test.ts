import assert from "node:assert/strict";
import { join } from "node:path";
import { systemClock } from "../core/clock.ts";
import { loadLibc } from "./libc.ts";
import { createSpawner, type OutputStream, type ProcessRequest, type Spawner } from "./spawn.ts";

const libc = loadLibc();
const spawners: Spawner[] = [createSpawner({ libc: null, clock: systemClock })];
if (libc) spawners.push(createSpawner({ libc, clock: systemClock, outputPollMs: 20 }));

const decoder = new TextDecoder();

/** Runs `script` with sh in a fresh folder; returns what it printed, per stream, and how it ended. */
async function run(spawner: Spawner, script: string) {
  const dir = await Deno.makeTempDir({ prefix: "parallelic-spawn-" });
  const chunks: Array<[OutputStream, string, number]> = [];
  const t0 = performance.now();
  const request: ProcessRequest = {
    command: "/bin/sh",
    args: ["-c", script],
    cwd: dir,
    env: { PATH: "/usr/bin:/bin", GREETING: "hello" },
    stdoutPath: join(dir, "stdout"),
    stderrPath: join(dir, "stderr"),
    onOutput: (chunk, stream) => void chunks.push([stream, decoder.decode(chunk), performance.now() - t0]),
  };
  try {
    const proc = await spawner.start(request);
    const status = await proc.ended;
    const text = (stream: OutputStream) => chunks.filter(([s]) => s === stream).map(([, t]) => t).join("");
    return { status, stdout: text("stdout"), stderr: text("stderr"), chunks, dir, endedMs: performance.now() - t0 };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

for (const spawner of spawners) {
  Deno.test(`${spawner.kind}: output per stream, environment, working directory, exit code`, async () => {
    const r = await run(spawner, 'echo "$GREETING from $(pwd)"; echo oops >&2; exit 3');
    assert.match(r.stdout, /^hello from \/tmp\/parallelic-spawn-/);
    assert.equal(r.stderr, "oops\n");
    const { usage: _, ...status } = r.status;
    assert.deepEqual(status, { code: 3, signal: null, leftovers: false });
  });

  Deno.test(`${spawner.kind}: a process ended by a signal reports the signal; SIGPIPE is at its default`, async () => {
    const killed = await run(spawner, "kill -TERM $$");
    assert.equal(killed.status.signal, "SIGTERM");
    assert.equal(killed.status.code, null);
    // Deno ignores SIGPIPE; an instance must not inherit that, or `yes | head -1` would never end.
    const piped = await run(spawner, "yes | head -n 1");
    assert.equal(piped.stdout, "y\n");
    assert.equal(piped.status.code, 0);
  });

  Deno.test(`${spawner.kind}: kill() ends the whole tree`, async () => {
    const dir = await Deno.makeTempDir({ prefix: "parallelic-spawn-" });
    const marker = join(dir, "marker");
    const proc = await spawner.start({
      command: "/bin/sh",
      args: ["-c", `(sleep 1; echo alive > ${marker}) & sleep 30`],
      cwd: dir,
      env: { PATH: "/usr/bin:/bin" },
      stdoutPath: join(dir, "stdout"),
      stderrPath: join(dir, "stderr"),
      onOutput: () => {},
    });
    await new Promise((res) => setTimeout(res, 200));
    proc.kill("SIGTERM");
    const status = await proc.ended;
    assert.equal(status.signal, "SIGTERM");
    await new Promise((res) => setTimeout(res, 1300));
    await assert.rejects(Deno.stat(marker), Deno.errors.NotFound, "the background process was killed too");
    await Deno.remove(dir, { recursive: true });
  });
}

if (libc) {
  const spawner = createSpawner({ libc, clock: systemClock, outputPollMs: 20 });

  Deno.test("posix_spawn: output is read while the instance runs, not only at its end", async () => {
    const r = await run(spawner, "echo first; sleep 0.5; echo second");
    assert.equal(r.stdout, "first\nsecond\n");
    const first = r.chunks.find(([, t]) => t.includes("first"))!;
    assert.ok(first[2] < r.endedMs - 300, `first line read at ${first[2]} ms, the end at ${r.endedMs} ms`);
  });

  Deno.test("posix_spawn: processes left behind are killed when the main process ends, and reported", async () => {
    const marker = await Deno.makeTempFile();
    const r = await run(spawner, `(sleep 1; echo alive > ${marker}) & echo started`);
    assert.equal(r.stdout, "started\n");
    assert.equal(r.status.leftovers, true);
    await new Promise((res) => setTimeout(res, 1500));
    assert.equal(await Deno.readTextFile(marker), "", "the leftover process was killed before it wrote");
    await Deno.remove(marker);
  });

  Deno.test("posix_spawn: 48 processes at once tie up no threads (file operations go on meanwhile)", async () => {
    const dir = await Deno.makeTempDir({ prefix: "parallelic-spawn-" });
    const procs = await Promise.all(Array.from({ length: 48 }, (_, i) =>
      spawner.start({
        command: "/bin/sleep",
        args: ["1"],
        cwd: dir,
        env: {},
        stdoutPath: join(dir, `${i}.out`),
        stderrPath: join(dir, `${i}.err`),
        onOutput: () => {},
      })));
    // Deno's blocking pool has 32 threads: were each process waited for on one, this would queue behind them.
    const t0 = performance.now();
    await Deno.writeTextFile(join(dir, "probe"), "x");
    await Deno.readTextFile(join(dir, "probe"));
    assert.ok(performance.now() - t0 < 500, `file operations waited ${performance.now() - t0} ms`);
    const statuses = await Promise.all(procs.map((p) => p.ended));
    assert.ok(statuses.every((s) => s.code === 0));
    await Deno.remove(dir, { recursive: true });
  });

  Deno.test("posix_spawn: kill() after the main process ended does nothing, and says it ended", async () => {
    const dir = await Deno.makeTempDir({ prefix: "parallelic-spawn-" });
    const proc = await spawner.start({
      command: "/bin/true",
      args: [],
      cwd: dir,
      env: {},
      stdoutPath: join(dir, "stdout"),
      stderrPath: join(dir, "stderr"),
      onOutput: () => {},
    });
    assert.deepEqual(await proc.exited, { code: 0, signal: null });
    assert.equal(proc.done, true);
    await proc.ended;
    proc.kill("SIGKILL"); // Its pid may belong to another process by now: nothing is sent.
    await Deno.remove(dir, { recursive: true });
  });

  Deno.test("posix_spawn: a missing executable is refused with the reason", async () => {
    await assert.rejects(
      spawner.start({
        command: "/nonexistent/run.sh",
        args: [],
        cwd: "/tmp",
        env: {},
        stdoutPath: "/dev/null",
        stderrPath: "/dev/null",
        onOutput: () => {},
      }),
      /No such file or directory/,
    );
  });
} else {
  Deno.test("posix_spawn: skipped as the C library cannot be loaded here", () => {
    console.log("skipped: loadLibc() returned null (not Linux with glibc 2.34+, or PARALLELIC_SPAWNER=deno)");
  });
}

if (libc) {
  Deno.test("posix_spawn: the reaped process's CPU time and peak memory come with its end", async () => {
    const r = await run(spawners[1], "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; (sleep 0.01)");
    assert.equal(r.status.code, 0);
    assert.ok(r.status.usage && r.status.usage.cpuMs > 0, JSON.stringify(r.status.usage));
    assert.ok(r.status.usage.maxRssBytes > 0);
  });
}
