import assert from "node:assert/strict";
import { cpuList, createCpuPool, loadAffinity, pinProcess, threadEnv } from "./cpus.ts";

Deno.test("the CPU pool hands out free CPUs first, then the least shared, and takes them back", () => {
  const pool = createCpuPool([0, 1, 2, 3]);
  const a = pool.take(2);
  const b = pool.take(1);
  assert.deepEqual(a, [0, 1]);
  assert.deepEqual(b, [2]);
  assert.deepEqual(pool.take(2), [0, 3], "the free CPU, then the least shared");
  pool.release(a);
  assert.deepEqual(pool.take(1), [1], "released CPUs are free again");
  assert.equal(pool.take(9).length, 4, "never more than it has");
});

Deno.test("thread pools are sized to the CPUs asked for unless [env] sizes them", () => {
  const env: Record<string, string> = {};
  threadEnv(env, { OMP_NUM_THREADS: "8" }, 2);
  assert.deepEqual(env, { MKL_NUM_THREADS: "2", OPENBLAS_NUM_THREADS: "2" });
});

Deno.test("CPU lists are written as ranges", () => {
  assert.equal(cpuList([0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
  assert.equal(cpuList([5]), "5");
});

const affinity = loadAffinity();
Deno.test({
  name: "sched_setaffinity pins a process to the CPUs given",
  ignore: !affinity,
  async fn() {
    const cpus = affinity!.allowed();
    assert.ok(cpus.length >= 1);
    const child = new Deno.Command("sleep", { args: ["5"] }).spawn();
    try {
      assert.ok(affinity!.set(child.pid, [cpus.at(-1)!]));
      const status = await Deno.readTextFile(`/proc/${child.pid}/status`);
      assert.equal(/Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1], String(cpus.at(-1)));
    } finally {
      child.kill("SIGKILL");
      await child.status;
    }
    assert.equal(affinity!.set(2 ** 22 + 7, cpus), false, "a process that is gone");
  },
});

Deno.test({
  name: "pinProcess pins every thread of a process, single- or multi-threaded",
  ignore: !affinity,
  async fn() {
    const cpu = affinity!.allowed().at(-1)!;
    // Deno itself stands for a multi-threaded program (its runtime's threads run before any script does).
    const script = "console.log('ready'); setTimeout(() => {}, 5000);";
    // Link counts as nodes read them (statx through the C library where it loads), and from Deno.statSync.
    const counters = [undefined, (path: string) => Deno.statSync(path).nlink ?? null];
    for (const [many, linkCount] of [false, true].flatMap((m) => counters.map((c) => [m, c] as const))) {
      const child = many
        ? new Deno.Command(Deno.execPath(), { args: ["eval", script], stdout: "piped" }).spawn()
        : new Deno.Command("sleep", { args: ["5"], stdout: "piped" }).spawn();
      const threads = many ? "many" : "one";
      try {
        if (many) await child.stdout.getReader().read(); // "ready": its threads run.
        const tids = [...Deno.readDirSync(`/proc/${child.pid}/task`)].map((e) => e.name);
        assert.ok(many ? tids.length > 1 : tids.length === 1, `${tids.length} threads`);
        pinProcess(affinity!, child.pid, [cpu], linkCount);
        for (const tid of tids) {
          const status = await Deno.readTextFile(`/proc/${child.pid}/task/${tid}/status`);
          assert.equal(/Cpus_allowed_list:\s*(\S+)/.exec(status)?.[1], String(cpu), `thread ${tid} of ${threads}`);
        }
      } finally {
        child.kill("SIGKILL");
        await child.status;
        if (!many) await child.stdout.cancel();
      }
    }
  },
});
