import assert from "node:assert/strict";
import { ManualClock, systemClock } from "../core/clock.ts";
import { openCgroups } from "./cgroup.ts";
import { createUsageWatcher, FIRST_LOOK_MS, mib } from "./usage.ts";

Deno.test("the watcher sums CPU and memory over the whole tree and reports one going over its memory", async () => {
  const watcher = createUsageWatcher({ clock: systemClock, intervalMs: 20 });
  // sh's children: one burns CPU, one holds more than 16 MiB (a Deno process, idle).
  const child = new Deno.Command("sh", {
    args: [
      "-c",
      'i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done & "$0" eval "setTimeout(() => {}, 30000)" & wait',
      Deno.execPath(),
    ],
    stdout: "null",
    stderr: "null",
  }).spawn();
  let over = 0;
  const adopted: number[] = [];
  const watch = watcher.watch({
    pid: child.pid,
    cgroup: null,
    memoryBytes: 16 * 2 ** 20,
    adopt: (pid) => adopted.push(pid),
    onOverMemory: (bytes) => over = bytes,
  });
  const deadline = Date.now() + 20_000;
  while ((over === 0 || watch.seen().cpuMs === 0) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const seen = watch.stop();
  for (const pid of [...adopted, child.pid]) {
    try {
      Deno.kill(pid, "SIGKILL");
    } catch { /* gone */ }
  }
  await child.status;
  assert.ok(over > 16 * 2 ** 20, `over at ${over}`);
  assert.ok(seen.maxRssBytes >= over);
  assert.ok(seen.cpuMs > 0, `cpuMs ${seen.cpuMs}`);
  assert.ok(adopted.length >= 1, "the first look finds the children");
});

Deno.test("an instance is first looked at once it has run FIRST_LOOK_MS, not sooner", async () => {
  const clock = new ManualClock();
  const watcher = createUsageWatcher({ clock, intervalMs: 200 });
  const child = new Deno.Command("sh", { args: ["-c", "sleep 30 & wait"], stdout: "null", stderr: "null" }).spawn();
  try {
    // Its child is forked, and shows in /proc, once sh has run a moment.
    const deadline = Date.now() + 10_000;
    while (!Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`).trim() && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    const adopted = { old: 0, young: 0 };
    const watch = (who: keyof typeof adopted) =>
      watcher.watch({ pid: child.pid, cgroup: null, memoryBytes: 0, adopt: () => adopted[who]++, onOverMemory() {} });
    const old = watch("old");
    clock.advance(FIRST_LOOK_MS / 2);
    const young = watch("young");
    clock.advance(FIRST_LOOK_MS / 2);
    assert.deepEqual(adopted, { old: 1, young: 0 }, "the one that ran FIRST_LOOK_MS was looked at, the other not yet");
    clock.advance(200);
    assert.deepEqual(adopted, { old: 1, young: 1 });
    old.stop();
    young.stop();
  } finally {
    const children = Deno.readTextFileSync(`/proc/${child.pid}/task/${child.pid}/children`).trim().split(" ");
    for (const pid of [...children.filter(Boolean).map(Number), child.pid]) Deno.kill(pid, "SIGKILL");
    await child.status;
  }
});

Deno.test("memory is worded in MiB", () => {
  assert.equal(mib(64 * 2 ** 20), "64 MiB");
  assert.equal(mib(190.4 * 2 ** 20), "190 MiB");
  assert.equal(mib(1.5 * 2 ** 20), "1.5 MiB");
});

const cgroups = await openCgroups(`usage-test`);
Deno.test({
  name: "an instance's cgroup counts the CPU time of what runs in it and kills it all when removed",
  ignore: !cgroups,
  async fn() {
    const openFds = () => [...Deno.readDirSync("/proc/self/fd")].length;
    const fdsBefore = openFds();
    const cg = cgroups!.create("t-0-0", 0)!;
    assert.ok(cg);
    const child = new Deno.Command("sh", {
      args: ["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30"],
    })
      .spawn();
    assert.ok(cg.add(child.pid));
    assert.deepEqual(cg.pids(), [child.pid]);
    const deadline = Date.now() + 20_000;
    while (cg.usage().cpuMs === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.ok(cg.usage().cpuMs > 0);
    const before = cg.usage().cpuMs;
    await cg.remove();
    assert.equal((await child.status).signal, "SIGKILL");
    // An empty cgroup is kept for the next instance, which counts from zero.
    const again = cgroups!.create("t-1-0", 0)!;
    const burner = new Deno.Command("sh", { args: ["-c", "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done"] })
      .spawn();
    assert.ok(again.add(burner.pid));
    await burner.status;
    const used = again.usage().cpuMs;
    assert.ok(used > 0, "a reused cgroup's files, kept open, read anew");
    await again.remove();
    const third = cgroups!.create("t-2-0", 0)!;
    assert.equal(third.path, again.path, "the empty one is reused");
    assert.equal(third.usage().cpuMs, 0, `counted from its reuse, not the ${before} + ${used} ms before`);
    assert.equal(third.add(2 ** 22 + 7), false, "a process that is gone");
    await third.remove();
    await cgroups!.close();
    assert.throws(() => Deno.statSync(cgroups!.base), Deno.errors.NotFound);
    assert.equal(openFds(), fdsBefore, "the files kept open for reuse are closed with their cgroups");
  },
});
