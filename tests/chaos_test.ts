/**
 * Chaos soak, small: 100 short instances on a manager with an external
 * nats-server and two node processes, while 6 seeded random faults
 * (SIGKILL, SIGTERM or SIGSTOP+SIGCONT of a node, nats-server or the manager)
 * hit them. Nothing may be lost: each instance recorded once with one result,
 * every output stored, finalize saw all of them, no process of the task left.
 * `CHAOS_SEED=N` repeats a run; `bench/chaos.ts` runs the same at any size.
 */
import assert from "node:assert/strict";
import { runChaos } from "../bench/chaos.ts";
import { tempDir } from "./kit/mod.ts";

Deno.test({
  name: "chaos: random kills and freezes of nodes, nats-server and manager lose no instance, output or process",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const seed = Number(Deno.env.get("CHAOS_SEED") ?? Math.floor(Math.random() * 2 ** 31));
    console.log(`chaos seed ${seed} (repeat with CHAOS_SEED=${seed})`);
    await using work = await tempDir();
    const r = await runChaos({
      instances: 100,
      faults: 6,
      seed,
      sleepMs: 300,
      slots: 2,
      dir: work.path,
      timeoutMs: 120_000,
      log: console.log,
    });
    assert.deepEqual(r.problems, [], `seed ${seed}: ${JSON.stringify(r.faults)}`);
    assert.equal(r.faults.length, 6);
    assert.equal(r.recoveries, 6);
    assert.equal(r.state, "succeeded");
    assert.equal(r.finalizeSeen, 100);
  },
});
