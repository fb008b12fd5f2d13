import assert from "node:assert/strict";
import { join } from "node:path";
import { type Bus, createBus, unwrap } from "../../core/bus.ts";
import type { AuditEntry } from "../../core/audit.ts";
import { systemClock } from "../../core/clock.ts";
import { parseTaskToml } from "../../core/task_toml.ts";
import {
  type AssignSpan,
  type Attempt,
  type InstanceRecord,
  nodeHeartbeat,
  nodesList,
  type SubmitKeyRecord,
  taskCancel,
  taskDoneAll,
  taskExplain,
  type TaskProgress,
  taskProgressAll,
  type TaskRecord,
  taskSubmit,
} from "../../core/schema.ts";
import { kvWith, recordingAtomics, startTestNats, testLogger, waitUntil } from "../../tests/kit/mod.ts";
import {
  AUDIT,
  dataUseKey,
  instanceKey,
  readInstances,
  spansOf,
  SUBMIT_KEY_TTL_MS,
  submitKeyKey,
  taskKey,
} from "../../core/kv.ts";
import { clipError, createTaskActor, MAX_ATTEMPT_ERROR_CHARS, type TaskActor, type TaskActorOptions } from "./mod.ts";
import { serialize } from "node:v8";
import { actorEnv, DIGEST, fakeNode, nodeRecord, submit, taskWhen } from "./test_kit.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
async function setup(t: { dir: string }, options: { retryBackoffMs?: number } = {}) {
  const kv = await Deno.openKv(join(t.dir, "state.kv"));
  return { kv, ...options };
}

function startActor(
  bus: Bus,
  kv: Deno.Kv,
  abort: AbortController,
  retryBackoffMs = 10,
  options: Partial<TaskActorOptions> = {},
): TaskActor {
  return createTaskActor({ bus, kv, clock: systemClock, log: testLogger() }, {
    signal: abort.signal,
    retryBackoffMs,
    orphanGraceMs: 60_000,
    ...options,
  });
}

Deno.test({
  name: "task actor dispatches in batches, records results in few commits and ends the task",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus, actor } = env;
    const node = fakeNode(bus, "n1", 2);
    const done: string[] = [];
    bus.subscribe(taskDoneAll, (d) => void done.push(d.state));
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 200\n`);
    assert.equal(task.instances, 200);
    let finished = 0;
    let batches = 0;
    while (finished < 200) {
      await waitUntil(() => node.assigned.length > finished, 5000, "an assignment");
      const batch = node.assigned.slice(finished);
      // 2 slots with a prefetch of 1x at first (4 held); for short instances the
      // prefetch grows, up to 64x the slots.
      if (finished === 0) {
        assert.equal(batch.length, 4);
        // First attempts are stored as one span per node and cycle, not one record each.
        const spans = await Array.fromAsync(kv.list<AssignSpan>({ prefix: spansOf(task.id) }));
        assert.deepEqual(spans.map((e) => [e.value.from, e.value.to, e.value.node]), [[0, 4, "n1"]]);
        assert.equal((await kv.get(instanceKey(task.id, 2))).value, null);
        const running = await readInstances(kv, task.id, 2, 6);
        assert.deepEqual([...running.keys()], [2, 3], "instances 4 and 5 were never dispatched");
        assert.equal(running.get(3)?.state, "running");
        assert.equal(running.get(3)?.node, "n1");
      }
      assert.ok(batch.length <= 2 * 65, `batch of ${batch.length}`);
      batches++;
      finished += batch.length;
      const ack = await node.report(batch);
      assert.equal(ack.accepted, batch.length);
    }
    await waitUntil(() => done.length === 1, 5000, "task done");
    assert.deepEqual(done, ["succeeded"]);
    const rec = (await kv.get<TaskRecord>(taskKey(task.id))).value!;
    assert.equal(rec.state, "succeeded");
    assert.equal(rec.counts.succeeded, 200);
    assert.equal(new Set(node.assigned.map((r) => r.index)).size, 200, "each instance dispatched once");
    assert.ok(batches < 50, `short instances get a deeper prefetch: ${batches} round trips for 200`);
    const inst = (await kv.get<InstanceRecord>(instanceKey(task.id, 17))).value!;
    assert.equal(inst.state, "succeeded");
    assert.equal(inst.history.length, 1);
    assert.ok(actor.stats().commits < 200 * 2, `commits ${actor.stats().commits} should be batched`);
    assert.deepEqual(await Array.fromAsync(kv.list({ prefix: spansOf(task.id) })), [], "spans are gone once all ended");
    assert.equal((await readInstances(kv, task.id, 0, 200)).size, 200);
  },
});

Deno.test({
  name: "task actor fences stale attempts and foreign nodes, retries failures with attempt + 1",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 1);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 1\n[limits]\nretries = 1\n`);
    await waitUntil(() => node.assigned.length === 1);
    const first = node.assigned[0];
    assert.equal(first.attempt, 0);
    assert.equal((await node.report([{ ...first, attempt: 5 }])).ignored, 1, "wrong attempt ignored");
    assert.equal((await node.report([first], {}, "intruder")).ignored, 1, "wrong node ignored");
    assert.equal((await node.report([first], { exitCode: 3 })).accepted, 1);
    await waitUntil(() => node.assigned.length === 2, 5000, "the retry");
    assert.equal(node.assigned[1].attempt, 1);
    assert.equal((await node.report([first])).ignored, 1, "late report of attempt 0 ignored");
    await node.report([node.assigned[1]], { exitCode: 4 });
    const rec = await taskWhen(kv, task.id, (r) => r.state === "failed", "the task failed");
    assert.equal(rec.counts.failed, 1);
    assert.match(rec.reason ?? "", /1 of 1 instances failed/);
    const inst = (await kv.get<InstanceRecord>(instanceKey(task.id, 0))).value!;
    assert.deepEqual(inst.history.map((h) => h.exitCode), [3, 4]);
  },
});

Deno.test({
  name: "task actor requeues a lost node's instances elsewhere and cancels with kill orders",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const a = fakeNode(bus, "a", 1);
    const b = fakeNode(bus, "b");
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 2\n`);
    await waitUntil(() => a.assigned.length === 2, 5000, "both on a");
    b.join(1);
    a.join(1, { state: "lost" }, "lost");
    await waitUntil(() => b.assigned.length === 2, 5000, "requeued on b");
    assert.deepEqual(b.assigned.map((r) => r.attempt), [1, 1]);
    assert.equal((await a.report(a.assigned)).ignored, 2, "the lost node's late results are ignored");
    await b.report([b.assigned[0]]);
    const cancelled = unwrap(await bus.request(taskCancel, { taskId: task.id, by: "alice" }));
    assert.equal(cancelled.state, "cancelled");
    await waitUntil(() => b.kills.length === 1, 5000, "kill order");
    assert.equal(b.kills[0].items[0].taskId, task.id);
    const rec = (await kv.get<TaskRecord>(taskKey(task.id))).value!;
    assert.deepEqual(rec.counts, { queued: 0, running: 0, succeeded: 1, failed: 0, cancelled: 1 });
    const inst = (await kv.get<InstanceRecord>(instanceKey(task.id, b.assigned[1].index))).value!;
    assert.deepEqual(inst.history.map((h) => h.node), ["a", "b"]);
    assert.match(inst.history[0].error ?? "", /node a lost/);
  },
});

Deno.test({
  name: "a restarted task actor rebuilds its state from Deno KV and accepts results of attempts in flight",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const { kv } = await setup(nats);
    const bus = createBus(nats.nc, testLogger());
    const node = fakeNode(bus, "n1");
    const nodeRec = nodeRecord("n1", 2);
    bus.serve(nodesList, () => ({ ok: true as const, nodes: [nodeRec] }));
    const first = new AbortController();
    let actor = startActor(bus, kv, first);
    await actor.ready;
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 10\n`);
    await waitUntil(() => node.assigned.length === 4, 5000, "first batch");
    first.abort();
    await actor.stopped;
    const second = new AbortController();
    actor = startActor(bus, kv, second);
    await actor.ready;
    // The node still runs what the first actor gave it (stored as a span); heartbeats say so.
    bus.publish(nodeHeartbeat("n1"), { name: "n1", sentAt: Date.now(), usedSlots: 2, holding: node.assigned });
    assert.equal((await node.report(node.assigned.slice(0, 4))).accepted, 4, "attempts in flight survive");
    let finished = 4;
    while (finished < 10) {
      await waitUntil(() => node.assigned.length > finished, 5000, "more work");
      const batch = node.assigned.slice(finished);
      finished += batch.length;
      await node.report(batch);
    }
    const rec = await taskWhen(kv, task.id, (r) => r.state === "succeeded", "the task succeeded");
    assert.equal(rec.counts.succeeded, 10);
    assert.equal(new Set(node.assigned.map((r) => r.index)).size, 10, "no instance started twice");
    assert.deepEqual(
      await Array.fromAsync(kv.list({ prefix: spansOf(task.id) })),
      [],
      "the rebuilt spans were deleted",
    );
    second.abort();
    await actor.stopped;
    kv.close();
  },
});

Deno.test({
  name:
    "task actor runs [finalize] as one extra instance once all succeeded, holding the task running, across a restart",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const { kv } = await setup(nats);
    const bus = createBus(nats.nc, testLogger());
    const node = fakeNode(bus, "n1");
    bus.serve(nodesList, () => ({ ok: true as const, nodes: [nodeRecord("n1", 4)] }));
    const first = new AbortController();
    let actor = startActor(bus, kv, first);
    await actor.ready;
    const task = await submit(
      bus,
      `[task]\nentrypoint = "run.sh"\ninstances = 3\n[finalize]\nentrypoint = "merge.sh"\n`,
    );
    await waitUntil(() => node.assigned.length === 3, 5000, "three instances");
    await node.report(node.assigned, { outputBytes: 100, logBytes: 10 });
    await waitUntil(() => node.assigned.length === 4, 5000, "the finalize run");
    assert.deepEqual(node.assigned[3], { taskId: task.id, index: 3, attempt: 0 });
    assert.deepEqual(node.runs[3].finalize, { entrypoint: "merge.sh", command: null, args: [] });
    const running = await taskWhen(kv, task.id, (r) => r.finalize === "running", "finalize running");
    assert.equal(running.state, "running", "the task waits for finalize");
    assert.deepEqual(running.counts, { queued: 0, running: 0, succeeded: 3, failed: 0, cancelled: 0 });

    first.abort();
    await actor.stopped;
    const second = new AbortController();
    actor = startActor(bus, kv, second);
    await actor.ready;
    bus.publish(nodeHeartbeat("n1"), { name: "n1", sentAt: Date.now(), usedSlots: 1, holding: [node.assigned[3]] });
    assert.equal((await node.report([node.assigned[3]], { outputBytes: 50, logBytes: 5 })).accepted, 1);
    const done = await taskWhen(kv, task.id, (r) => r.state === "succeeded", "task succeeded");
    assert.equal(done.finalize, "succeeded");
    assert.equal(done.counts.succeeded, 3, "finalize is not counted as an instance");
    assert.equal(done.outputBytes, 350);
    assert.equal(done.logBytes, 35);
    assert.equal(node.assigned.length, 4, "finalize ran once");
    second.abort();
    await actor.stopped;
    kv.close();
  },
});

Deno.test({
  name:
    "a failing [finalize] fails the task; a failed instance means no finalize; retried outputs replace earlier ones",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 1);
    const toml = `[task]\nentrypoint = "run.sh"\n[limits]\nretries = 1\n[finalize]\nentrypoint = "merge.sh"\n`;

    const a = await submit(bus, toml);
    await waitUntil(() => node.assigned.length === 1, 5000, "instance of a");
    await node.report([node.assigned[0]], { exitCode: 1, outputBytes: 100 });
    await waitUntil(() => node.assigned.length === 2, 5000, "retry of a");
    await node.report([node.assigned[1]], { outputBytes: 30 });
    await waitUntil(() => node.assigned.length === 3, 5000, "finalize of a");
    assert.equal(node.assigned[2].index, 1);
    await node.report([node.assigned[2]], { exitCode: 2 });
    await waitUntil(() => node.assigned.length === 4, 5000, "finalize retried");
    await node.report([node.assigned[3]], { exitCode: 2 });
    const failed = await taskWhen(kv, a.id, (r) => r.state === "failed", "a failed");
    assert.equal(failed.finalize, "failed");
    assert.match(failed.reason ?? "", /finalize failed: exit code 2/);
    assert.equal(failed.outputBytes, 30, "the retry's outputs replaced the first attempt's");

    const b = await submit(bus, `[task]\nentrypoint = "run.sh"\n[finalize]\nentrypoint = "merge.sh"\n`);
    await waitUntil(() => node.assigned.length === 5, 5000, "instance of b");
    await node.report([node.assigned[4]], { exitCode: 9 });
    const bFailed = await taskWhen(kv, b.id, (r) => r.state === "failed", "b failed");
    assert.equal(bFailed.finalize, null, "no finalize after a failed instance");
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(node.assigned.length, 5);
  },
});

Deno.test({
  name: "task actor places by labels, memory and gpus, explains what does not fit, and skips draining nodes",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { nats, bus } = env;
    const a = fakeNode(bus, "a", 2, { labels: { zone: "a" } });
    const b = fakeNode(bus, "b", 2, { labels: { zone: "b" } });
    await nats.nc.flush();
    const zoned = await submit(bus, `[task]\nentrypoint = "r"\ninstances = 3\n[placement]\nlabels = { zone = "b" }\n`);
    await waitUntil(() => b.assigned.length === 3, 5000, "zone b instances");
    assert.equal(a.assigned.length, 0, "nothing placed on a node without the label");

    const gpu = await submit(bus, `[task]\nentrypoint = "r"\n[resources]\ngpus = 1\n`);
    const why = unwrap(await bus.request(taskExplain, { taskId: gpu.id }));
    assert.equal(why.state, "queued");
    assert.match(why.explanation, /no node has gpus >= 1 \(nodes: a: 0, b: 0\)/);
    const big = await submit(bus, `[task]\nentrypoint = "r"\n[resources]\nmemory = "2GiB"\n`);
    assert.match(
      unwrap(await bus.request(taskExplain, { taskId: big.id })).explanation,
      /no node has memory >= 2.0 GiB \(nodes: a: 1.0 GiB, b: 1.0 GiB\)/,
    );
    const running = unwrap(await bus.request(taskExplain, { taskId: zoned.id, index: 1 }));
    assert.match(running.explanation, /Instance 1 runs on node b \(attempt 0\)/);

    await b.report(b.assigned);
    a.join(2, { state: "draining", drain: true }, "updated");
    await nats.nc.flush();
    const plain = await submit(bus, `[task]\nentrypoint = "r"\ninstances = 2\n`);
    await waitUntil(() => b.assigned.length === 5, 5000, "plain instances on b");
    assert.equal(a.assigned.length, 0, "a draining node takes nothing new");
    assert.ok(b.assigned.slice(3).every((r) => r.taskId === plain.id));
  },
});

Deno.test({
  name: "task actor serves higher priority first and shares equal priority fairly between users",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n");
    const spec = (toml: string) => parseTaskToml(toml);
    const submitAs = async (owner: string, toml: string) =>
      unwrap(await bus.request(taskSubmit, { digest: DIGEST, packageBytes: 1, spec: spec(toml), owner }));
    // Queue everything before any node joins.
    const bulk = await submitAs("alice", `[task]\nentrypoint = "r"\ninstances = 1000\n`);
    const small = await submitAs("bob", `[task]\nentrypoint = "r"\ninstances = 10\n`);
    const urgent = await submitAs("carol", `[task]\nentrypoint = "r"\ninstances = 2\n[limits]\npriority = 90\n`);
    node.join(2);
    await waitUntil(() => node.assigned.length >= 4, 5000, "first batch");
    const first = node.assigned.slice(0, 4);
    assert.deepEqual(first.slice(0, 2).map((r) => r.taskId), [urgent.id, urgent.id], "priority 90 goes first");
    let finished = 0;
    // Run until bob's small task is done; alice's bulk must not have starved it.
    for (let round = 0; round < 100; round++) {
      await waitUntil(() => node.assigned.length > finished, 5000, "work");
      const batch = node.assigned.slice(finished);
      finished += batch.length;
      await node.report(batch);
      const rec = (await kv.get<TaskRecord>(taskKey(small.id))).value!;
      if (rec.state === "succeeded") break;
    }
    const order = node.assigned.map((r) => r.taskId === bulk.id ? "A" : r.taskId === small.id ? "B" : "U").join("");
    assert.equal(order.split("B").length - 1, 10);
    assert.ok(
      order.lastIndexOf("B") < 30,
      `bob's 10 are dispatched among the first 30, not after alice's 1000: ${order.slice(0, 40)}`,
    );
  },
});

Deno.test({
  name: "task actor publishes throttled progress events whose changes add up to every instance's final state",
  ...opts,
  async fn() {
    const progressMs = 200;
    // Small batches (no deeper prefetch for short instances), so that there are many commits to throttle.
    await using env = await actorEnv({ progressMs, maxPrefetchFactor: 1 });
    const { bus, actor } = env;
    const node = fakeNode(bus, "n1", 2);
    const events: TaskProgress[] = [];
    bus.subscribe(taskProgressAll, (e) => void events.push(e));
    const startedAt = Date.now();
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 60\n`);
    let finished = 0;
    while (finished < 60) {
      await waitUntil(() => node.assigned.length > finished, 5000, "an assignment");
      const batch = node.assigned.slice(finished);
      finished += batch.length;
      await node.report(batch);
      await new Promise((r) => setTimeout(r, 20));
    }
    await waitUntil(() => events.at(-1)?.state === "succeeded", 5000, "the final progress event");
    const elapsedMs = Date.now() - startedAt;
    assert.ok(events.every((e) => e.taskId === task.id && e.owner === "alice" && e.instances === 60));
    // The first event comes with the commit that stored the task together with its first placements.
    assert.equal(events[0].state, "running");
    assert.deepEqual(events[0].changed, [[0, "running"], [1, "running"], [2, "running"], [3, "running"]]);
    assert.deepEqual(events.at(-1)!.counts, { queued: 0, running: 0, succeeded: 60, failed: 0, cancelled: 0 });
    // 15 commits or more happened; the throttle lets at most one event per progressMs through.
    assert.ok(actor.stats().commits > 15, `commits ${actor.stats().commits}`);
    assert.ok(events.length <= elapsedMs / progressMs + 2, `${events.length} events in ${elapsedMs} ms`);
    const last = new Map<number, string>();
    for (const e of events) for (const [index, state] of e.changed!) last.set(index, state);
    assert.equal(last.size, 60);
    assert.ok([...last.values()].every((s) => s === "succeeded"));
  },
});

Deno.test({
  name: "an instance its node could not run is requeued without using up a retry, but not forever",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 1);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\n`);
    // The node keeps failing to run it (say it cannot fetch the package): node trouble, not the instance's.
    for (let n = 1; n <= 6; n++) {
      await waitUntil(() => node.assigned.length === n, 5000, `attempt ${n - 1}`);
      const lost = {
        exitCode: null,
        error: "node n1 could not run it: timeout",
        lost: true,
        outputBytes: 0,
        logBytes: 0,
      };
      await node.report([node.assigned[n - 1]], lost);
    }
    const rec = await taskWhen(kv, task.id, (r) => r.state === "failed", "the task to fail");
    assert.equal(rec.spec.retries, 0);
    assert.equal(node.assigned.length, 6, "requeued 5 times although retries = 0, then given up");
  },
});

Deno.test({
  name: "a node's word on 'lost' decides; a result without it (an older node) is read by its wording",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 2);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\ninstances = 2\n`);
    await waitUntil(() => node.assigned.length === 2, 5000, "both instances");
    const ended = { exitCode: null, outputBytes: 0, logBytes: 0, error: "node n1 could not run it: disk full" };
    const byIndex = (i: number) => node.assigned.find((r) => r.index === i)!;
    await node.report([byIndex(0)], { ...ended, lost: false });
    await node.report([byIndex(1)], ended);
    // Instance 1 (no 'lost', worded "node …") is requeued without using a retry; instance 0 (lost: false) failed.
    await waitUntil(() => node.assigned.length === 3, 5000, "instance 1 again");
    assert.deepEqual({ index: node.assigned[2].index, attempt: node.assigned[2].attempt }, { index: 1, attempt: 1 });
    const zero = (await kv.get<InstanceRecord>(instanceKey(task.id, 0))).value!;
    assert.equal(zero.state, "failed");
    assert.equal(zero.history[0].lost, false);
  },
});

/** The real Deno KV `kv`, except that an atomic's commit throws while `fail()` says so (a full disk, say). */
const failingCommits = (kv: Deno.Kv, fail: () => boolean) =>
  kvWith(kv, {
    atomic() {
      const op = kv.atomic();
      if (fail()) op.commit = () => Promise.reject(new Error("database or disk is full"));
      return op;
    },
  });

Deno.test({
  name: "a failed Deno KV commit loses nothing: the submit with its audit entry, then results, land with the retry",
  ...opts,
  async fn() {
    let failing = 0;
    await using env = await actorEnv({}, {
      wrapKv: (kv) => failingCommits(kv, () => failing > 0 && failing-- > 0),
      audit: true,
    });
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 2);
    const done: string[] = [];
    bus.subscribe(taskDoneAll, (d) => void done.push(d.state));
    await bus.nc.flush();
    failing = 1;
    const startedAt = Date.now();
    const task = unwrap(
      await bus.request(taskSubmit, {
        digest: DIGEST,
        packageBytes: 1,
        spec: parseTaskToml(`[task]\nentrypoint = "run.sh"\ninstances = 2\n`),
        owner: "alice",
        address: "192.0.2.7",
      }),
    );
    // Answered only once stored: by the retry, 250 ms after the failed commit.
    assert.ok(Date.now() - startedAt >= 200, `answered after ${Date.now() - startedAt} ms`);
    assert.equal(failing, 0, "the first commit failed");
    assert.equal((await kv.get<TaskRecord>(taskKey(task.id))).value?.id, task.id);
    const audits = await Array.fromAsync(kv.list<AuditEntry>({ prefix: AUDIT }));
    assert.deepEqual(
      audits.map((e) => [e.value.action, e.value.target, e.value.address]),
      [["task.submit", task.id, "192.0.2.7"]],
      "the audit entry came with the task",
    );
    // The first results' commit fails too: the node's acknowledgement waits for the retry.
    await waitUntil(() => node.assigned.length === 2, 5000, "both instances assigned");
    failing = 1;
    const finishedAt = Date.now();
    const ack = await node.report(node.assigned);
    assert.equal(ack.accepted, 2);
    assert.ok(
      Date.now() - finishedAt >= 200,
      `acknowledged after ${Date.now() - finishedAt} ms, not before the retry`,
    );
    assert.equal(failing, 0, "the results' first commit failed");
    await waitUntil(() => done.length === 1, 5000, "the task done");
    const rec = (await kv.get<TaskRecord>(taskKey(task.id))).value!;
    assert.equal(rec.state, "succeeded");
    assert.equal(rec.counts.succeeded, 2);
    const instances = await readInstances(kv, task.id, 0, 2);
    assert.deepEqual([...instances.values()].map((i) => i.state), ["succeeded", "succeeded"]);
  },
});

Deno.test({
  name: "a submit repeated with the same Idempotency-Key answers the task the first made, at once or later",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const spec = parseTaskToml(`[task]\nentrypoint = "run.sh"\ninstances = 2\n`);
    const send = (owner: string, key?: string) =>
      bus.request(taskSubmit, { digest: DIGEST, packageBytes: 1, spec, owner, key }).then(unwrap);
    // Two at once (an answer lost, the client sent it again meanwhile): one task.
    const [a, b] = await Promise.all([send("alice", "k1"), send("alice", "k1")]);
    assert.equal(a.id, b.id);
    assert.deepEqual([a.replayed, b.replayed], [undefined, true]);
    // Later: answered from Deno KV, with the task's state now.
    const c = await send("alice", "k1");
    assert.equal(c.id, a.id);
    assert.equal(c.replayed, true);
    assert.equal((await kv.get<SubmitKeyRecord>(submitKeyKey("alice", "k1"))).value?.taskId, a.id);
    // Another owner's key, another key, no key: new tasks.
    const others = [await send("bob", "k1"), await send("alice", "k2"), await send("alice"), await send("alice")];
    assert.equal(new Set([a.id, ...others.map((o) => o.id)]).size, 5);
    // A key older than a day is forgotten (Deno KV may keep an expired entry a while).
    await kv.set(submitKeyKey("alice", "old"), { taskId: a.id, atMs: Date.now() - SUBMIT_KEY_TTL_MS - 1 });
    const fresh = await send("alice", "old");
    assert.notEqual(fresh.id, a.id);
    assert.equal(fresh.replayed, undefined);
    const stored = await Array.fromAsync(kv.list<TaskRecord>({ prefix: ["task"] }));
    assert.equal(stored.length, 6, "six tasks for eight submits");
    // The same key with another package or name is refused, in flight or stored.
    const other = { digest: `sha256-${"b".repeat(64)}` as typeof DIGEST, packageBytes: 1, spec, owner: "alice" };
    const [same, reused] = await Promise.allSettled([
      send("alice", "k3"),
      bus.request(taskSubmit, { ...other, key: "k3" }).then(unwrap),
    ]);
    assert.equal(same.status, "fulfilled");
    assert.equal(reused.status, "rejected");
    assert.equal((reused as PromiseRejectedResult).reason.code, "idempotency_key_reused");
    await assert.rejects(
      bus.request(taskSubmit, { ...other, spec: { ...spec, name: "renamed" }, key: "k1" }).then(unwrap),
      new RegExp(
        `^ConflictError: Cannot submit with Idempotency-Key 'k1' as it was used within the last day for another package or name \\(task ${a.id}\\)`,
      ),
    );
    // A task deleted since: the key makes a new one.
    unwrap(await bus.request(taskCancel, { taskId: a.id, by: "alice" }));
    await kv.delete(taskKey(a.id));
    const after = await send("alice", "k1");
    assert.notEqual(after.id, a.id);
    assert.equal(after.replayed, undefined);
    assert.equal((await kv.get<SubmitKeyRecord>(submitKeyKey("alice", "k1"))).value?.taskId, after.id);
  },
});

Deno.test({
  name: "a submitted task, its audit entry, Idempotency-Key and the uses of its data set versions land in one atomic",
  ...opts,
  async fn() {
    const atomics: string[][] = [];
    await using env = await actorEnv({}, { wrapKv: (kv) => recordingAtomics(kv, atomics, true), audit: true });
    const { kv, bus } = env;
    const version = `sha256:${"c".repeat(64)}`;
    const spec = parseTaskToml(`[task]\nentrypoint = "run.sh"\n[data]\nref = "genome"\n`);
    spec.data = { ref: { name: "genome", version } };
    const task = unwrap(
      await bus.request(taskSubmit, {
        digest: DIGEST,
        packageBytes: 1,
        spec,
        owner: "alice",
        address: "x",
        key: "k",
      }),
    );
    const withTask = atomics.find((a) => a.includes("task"));
    assert.deepEqual(withTask?.slice().sort(), ["audit", "data-use", "submit-key", "task"]);
    assert.deepEqual((await kv.get(dataUseKey(version, task.id))).value, {
      taskId: task.id,
      name: "genome",
      key: "ref",
    });
  },
});

Deno.test({
  name: "a task whose record would not fit a Deno KV value is refused, and the actor goes on storing others",
  ...opts,
  async fn() {
    await using env = await actorEnv();
    const { kv, bus } = env;
    const spec = parseTaskToml(`[task]\nentrypoint = "run.sh"\n`);
    const big = { ...spec, env: { A: "x".repeat(40_000), B: "y".repeat(30_000) } };
    await assert.rejects(
      bus.request(taskSubmit, { digest: DIGEST, packageBytes: 1, spec: big, owner: "alice" }).then(unwrap),
      (e) =>
        (e as { code?: string }).code === "task_too_large" &&
        /^Cannot accept task 'task' as its record would be \d+ bytes, more than the limit of 57344/.test(
          (e as Error).message,
        ),
    );
    const fine = unwrap(await bus.request(taskSubmit, { digest: DIGEST, packageBytes: 1, spec, owner: "alice" }));
    assert.equal((await kv.get<TaskRecord>(taskKey(fine.id))).value?.id, fine.id);
    assert.equal((await Array.fromAsync(kv.list({ prefix: ["task"] }))).length, 1);
  },
});

Deno.test({
  name: "an attempt's error text is cut so that an instance's record with every attempt fits a Deno KV value",
  ...opts,
  async fn() {
    // The worst case: 100 retries, 5 lost-node requeues and the first try, a 63-character node name, and errors of
    // two-byte characters (V8 stores them at two bytes each).
    const attempt = (n: number): Attempt => ({
      attempt: n,
      node: "n".repeat(63),
      assignedAt: Date.now(),
      startedAt: Date.now(),
      endedAt: Date.now(),
      exitCode: 255,
      signal: "SIGKILL",
      error: clipError("日".repeat(5000)),
      lost: false,
      outputBytes: 2 ** 40,
      cpuMs: 2 ** 40,
      maxRssBytes: 2 ** 40,
    });
    const worst: InstanceRecord = {
      index: 999_999,
      state: "failed",
      attempt: 105,
      node: "n".repeat(63),
      notBefore: Date.now(),
      history: Array.from({ length: 106 }, (_, n) => attempt(n)),
    };
    assert.ok(serialize(worst).byteLength < 64 * 1024, `${serialize(worst).byteLength} bytes`);
    // What a node reports is cut when stored.
    await using env = await actorEnv();
    const { kv, bus } = env;
    const node = fakeNode(bus, "n1", 1);
    const task = await submit(bus, `[task]\nentrypoint = "run.sh"\n`);
    await waitUntil(() => node.assigned.length === 1, 5000, "the assignment");
    await node.report([node.assigned[0]], {
      exitCode: 1,
      error: `could not store outputs from n1: ${"x".repeat(5000)}`,
    });
    await waitUntil(async () => (await kv.get<InstanceRecord>(instanceKey(task.id, 0))).value?.state === "failed");
    const error = (await kv.get<InstanceRecord>(instanceKey(task.id, 0))).value!.history[0].error!;
    assert.equal(error.length, MAX_ATTEMPT_ERROR_CHARS);
    assert.match(error, /^could not store outputs from n1: x+…$/);
  },
});
