import assert from "node:assert/strict";
import { join } from "node:path";
import { createBus, unwrap } from "../../core/bus.ts";
import { systemClock } from "../../core/clock.ts";
import {
  type InstanceRecord,
  type RerunRequest,
  taskCancel,
  taskExplain,
  type TaskRecord,
  taskRerun,
  taskUpdate,
} from "../../core/schema.ts";
import { startTestNats, testLogger, waitUntil } from "../../tests/kit/mod.ts";
import { failedOf, instanceKey } from "../../core/kv.ts";
import { createTaskActor } from "./mod.ts";
import { actorEnv, fakeNode, submit, taskWhen } from "./test_kit.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const rerunOf = async (bus: Parameters<typeof fakeNode>[0], req: Omit<RerunRequest, "by">) =>
  unwrap(await bus.request(taskRerun, { ...req, by: "alice" }));

/** Reports the attempts `node` is assigned, from the `from`th, as succeeded, until `to` were. */
async function reportAll(node: ReturnType<typeof fakeNode>, from: number, to: number) {
  for (let reported = from; reported < to;) {
    await waitUntil(() => node.assigned.length > reported, 5000, "more assigned");
    const batch = node.assigned.slice(reported);
    reported += batch.length;
    await node.report(batch);
  }
}

Deno.test({
  name: "a rerun of the failed instances runs them again in the same task, then finalize, keeping their history",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 4);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 6\n[finalize]\nentrypoint = "m.sh"\n`);
    await waitUntil(() => node.assigned.length === 6, 5000, "all six assigned");
    await node.report(node.assigned.filter((r) => r.index !== 2 && r.index !== 4));
    await node.report(node.assigned.filter((r) => r.index === 2 || r.index === 4), { exitCode: 1 });
    const failed = await taskWhen(kv, task.id, (r) => r.state === "failed", "the task failed");
    assert.equal(failed.finalize, null, "no finalize while instances failed");
    assert.deepEqual((await Array.fromAsync(kv.list({ prefix: failedOf(task.id) }))).map((e) => e.key[2]), [2, 4]);

    await assert.rejects(rerunOf(bus, { taskId: task.id, finalize: true }), /2 of its 6 instances did not succeed/);

    const reply = await rerunOf(bus, { taskId: task.id, instances: "failed" });
    assert.deepEqual(reply, { ok: true, state: "running", instances: 2, finalize: true });
    await assert.rejects(rerunOf(bus, { taskId: task.id, instances: "failed" }), /still running/);
    await waitUntil(() => node.assigned.length === 8, 5000, "the two reruns assigned");
    const again = node.assigned.slice(6);
    assert.deepEqual(again.map((r) => [r.index, r.attempt]), [[2, 1], [4, 1]], "next attempt numbers");
    const running = (await kv.get<TaskRecord>(["task", task.id])).value!;
    assert.equal(running.state, "running");
    assert.equal(running.endedAt, null);
    assert.equal(running.reruns, 1);
    assert.deepEqual(running.counts, { queued: 0, running: 2, succeeded: 4, failed: 0, cancelled: 0 });
    await node.report(again);
    await waitUntil(() => node.assigned.length === 9, 5000, "finalize assigned");
    assert.equal(node.assigned[8].index, 6);
    await node.report([node.assigned[8]]);
    const done = await taskWhen(kv, task.id, (r) => r.state === "succeeded", "the task succeeded");
    assert.equal(done.counts.succeeded, 6);
    assert.equal(done.finalize, "succeeded");
    const inst = (await kv.get<InstanceRecord>(instanceKey(task.id, 2))).value!;
    assert.deepEqual(inst.history.map((h) => h.exitCode), [1, 0], "the old attempt stays in the history");
    assert.equal(inst.rerunAt, 1);
    assert.deepEqual(await Array.fromAsync(kv.list({ prefix: failedOf(task.id) })), [], "the failed index is empty");

    await assert.rejects(rerunOf(bus, { taskId: task.id, instances: "failed" }), /every instance succeeded/);
    // Finalize alone, e.g. after fixing it: its record goes on with the next attempt.
    assert.equal((await rerunOf(bus, { taskId: task.id, finalize: true })).instances, 0);
    await waitUntil(() => node.assigned.length === 10, 5000, "finalize assigned again");
    assert.deepEqual([node.assigned[9].index, node.assigned[9].attempt], [6, 1]);
    await node.report([node.assigned[9]], { exitCode: 2 });
    const finFailed = await taskWhen(kv, task.id, (r) => r.state === "failed", "finalize failed");
    assert.match(finFailed.reason ?? "", /finalize failed/);
    // "failed" with every instance succeeded reruns the finalize that failed.
    assert.deepEqual((await rerunOf(bus, { taskId: task.id, instances: "failed" })).instances, 0);
    await waitUntil(() => node.assigned.length === 11, 5000, "finalize assigned a third time");
    assert.equal(node.assigned[10].attempt, 2);
  },
});

Deno.test({
  name: "a rerun gives each instance the task's retries anew, and a cancelled task's never-run instances run",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 1);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 1\n[limits]\nretries = 1\n`);
    await waitUntil(() => node.assigned.length === 1);
    await node.report([node.assigned[0]], { exitCode: 3 });
    await waitUntil(() => node.assigned.length === 2, 5000, "the retry");
    await node.report([node.assigned[1]], { exitCode: 3 });
    await taskWhen(kv, task.id, (r) => r.state === "failed", "failed after its retry");
    await rerunOf(bus, { taskId: task.id, instances: [0] });
    await waitUntil(() => node.assigned.length === 3, 5000, "the rerun");
    await node.report([node.assigned[2]], { exitCode: 3 });
    await waitUntil(() => node.assigned.length === 4, 5000, "a retry of the rerun, not a failure");
    assert.equal(node.assigned[3].attempt, 3);
    await node.report([node.assigned[3]]);
    await taskWhen(kv, task.id, (r) => r.state === "succeeded", "succeeded");

    // A fresh node of 1 slot holds 2; the other 8 are never dispatched before the cancel.
    node.join(1, { state: "draining" }, "updated");
    const fresh = fakeNode(bus, "n2", 1);
    const big = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 10\n`);
    await waitUntil(() => fresh.assigned.length === 2, 5000, "two held");
    unwrap(await bus.request(taskCancel, { taskId: big.id, by: "alice" }));
    const cancelled = await taskWhen(kv, big.id, (r) => r.state === "cancelled", "cancelled");
    assert.equal(cancelled.counts.cancelled, 10);
    // Some of the never-run ones: the others get cancelled records of their own.
    assert.equal((await rerunOf(bus, { taskId: big.id, instances: [5, 9] })).instances, 2);
    const part = await taskWhen(kv, big.id, (r) => r.state === "running", "running");
    assert.equal(part.counts.cancelled, 8);
    assert.equal((await kv.get<InstanceRecord>(instanceKey(big.id, 7))).value?.state, "cancelled");
    await waitUntil(() => fresh.assigned.length === 4, 5000, "5 and 9 assigned");
    assert.deepEqual(fresh.assigned.slice(2).map((r) => r.index), [5, 9]);
    await fresh.report(fresh.assigned.slice(2));
    const after = await taskWhen(kv, big.id, (r) => r.state === "cancelled", "ended again");
    assert.deepEqual(after.counts, { queued: 0, running: 0, succeeded: 2, failed: 0, cancelled: 8 });
    // Then all that did not succeed.
    assert.equal((await rerunOf(bus, { taskId: big.id, instances: "failed" })).instances, 8);
    await reportAll(fresh, 4, 12);
    const all = await taskWhen(kv, big.id, (r) => r.state === "succeeded", "all ran");
    assert.equal(all.counts.succeeded, 10);
    assert.equal(new Set(fresh.assigned.slice(2).map((r) => r.index)).size, 10, "each of the ten ran");
  },
});

Deno.test({
  name: "a rerun survives a manager restart: queued instances and the earlier finalize come back",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const kv = await Deno.openKv(join(nats.dir, "state.kv"));
    const bus = createBus(nats.nc, testLogger());
    const start = () => {
      const abort = new AbortController();
      const actor = createTaskActor({ bus, kv, clock: systemClock, log: testLogger() }, {
        signal: abort.signal,
        retryBackoffMs: 10,
        orphanGraceMs: 60_000,
      });
      return { actor, abort };
    };
    let run = start();
    await run.actor.ready;
    const node = fakeNode(bus, "n1", 2);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 2\n[finalize]\nentrypoint = "m.sh"\n`);
    await waitUntil(() => node.assigned.length === 2);
    await node.report(node.assigned);
    await waitUntil(() => node.assigned.length === 3, 5000, "finalize");
    await node.report([node.assigned[2]], { exitCode: 1 });
    await taskWhen(kv, task.id, (r) => r.state === "failed", "finalize failed");
    node.join(2, { state: "draining" }, "updated");
    await bus.nc.flush();
    await rerunOf(bus, { taskId: task.id, instances: [1] });
    run.abort.abort();
    await run.actor.stopped;
    run = start();
    await run.actor.ready;
    node.join(2);
    await waitUntil(() => node.assigned.length === 4, 5000, "instance 1 after the restart");
    assert.deepEqual([node.assigned[3].index, node.assigned[3].attempt], [1, 1]);
    await node.report([node.assigned[3]]);
    await waitUntil(() => node.assigned.length === 5, 5000, "finalize runs again, not skipped");
    assert.deepEqual([node.assigned[4].index, node.assigned[4].attempt], [2, 1]);
    await node.report([node.assigned[4]]);
    await taskWhen(kv, task.id, (r) => r.state === "succeeded", "succeeded");
    run.abort.abort();
    await run.actor.stopped;
    kv.close();
  },
});

Deno.test({
  name: "a node that failed 3 attempts of a task takes no more of it, explain says so, and a rerun clears it",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const a = fakeNode(bus, "a", 2);
    const b = fakeNode(bus, "b");
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 6\n[limits]\nretries = 3\n`);
    await waitUntil(() => a.assigned.length === 4, 5000, "four on a");
    // Held while b joins: nothing is placed before both nodes are known.
    unwrap(await bus.request(taskUpdate, { taskId: task.id, by: "alice", held: true }));
    await a.report(a.assigned, { exitCode: 1 });
    const failing = await taskWhen(kv, task.id, (r) => r.nodeFailures.a === 4, "a's failures counted");
    assert.deepEqual(failing.nodeFailures, { a: 4 });
    b.join(2);
    await bus.nc.flush();
    unwrap(await bus.request(taskUpdate, { taskId: task.id, by: "alice", held: false }));
    await waitUntil(() => b.assigned.length === 4, 5000, "four on b");
    const why = unwrap(await bus.request(taskExplain, { taskId: task.id }));
    assert.match(why.explanation, /nodes a take no more of it after 3 failed attempts each/);
    // Its four retries and two first attempts, all on b.
    await reportAll(b, 0, 6);
    const done = await taskWhen(kv, task.id, (r) => r.state === "succeeded", "succeeded");
    assert.equal(a.assigned.length, 4, "a took no more of it");
    assert.deepEqual(done.nodeFailures, { a: 4 });
    await rerunOf(bus, { taskId: task.id, instances: [0] });
    const rerun = (await kv.get<TaskRecord>(["task", task.id])).value!;
    assert.deepEqual(rerun.nodeFailures, {}, "a rerun follows a fix: every node is welcome again");
  },
});
