import assert from "node:assert/strict";
import { cpuList, createCpuPool, loadAffinity, threadEnv } from "./cpus.ts";

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
