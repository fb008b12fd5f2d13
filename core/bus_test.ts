import assert from "node:assert/strict";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { connectAsNode, startTestNats, testLogger, waitUntil } from "../tests/kit/mod.ts";
import { createBus, describeIssue, subjectMatches, unwrap } from "./bus.ts";
import {
  type Assignment,
  type CancelRequest,
  type Heartbeat,
  nodeAssign,
  nodeHeartbeat,
  nodeHeartbeatAll,
  taskCancel,
  taskResults,
  taskResultsAll,
  taskSubmit,
} from "./schema.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const hb = (name: string): Heartbeat => ({ name, sentAt: 1, usedSlots: 0, holding: [] });

Deno.test({
  name: "bus drops a message whose sender field does not match its subject, and counts it",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bus = createBus(nats.nc, testLogger());
    const got: string[] = [];
    bus.subscribe(nodeHeartbeatAll, (m, subject) => void got.push(`${m.name}@${subject}`));
    await nats.nc.flush();
    bus.publish(nodeHeartbeat("a"), hb("a"));
    // What a node allowed to publish only on parallelic.node.b.* could send to pass as 'a'.
    nats.nc.publish(nodeHeartbeat("b").subject, JSON.stringify(hb("a")));
    nats.nc.publish(nodeHeartbeat("b").subject, "not json");
    bus.publish(nodeHeartbeat("b"), hb("b"));
    await waitUntil(() => got.length === 2 && bus.rejected === 2);
    assert.deepEqual(got, ["a@parallelic.node.a.heartbeat", "b@parallelic.node.b.heartbeat"]);
  },
});

Deno.test({
  name: "bus drops what a JetStream consumer delivers onto a Parallelic subject (a replay), without answering it",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bus = createBus(nats.nc, testLogger());
    const cancels: string[] = [];
    bus.serve(taskCancel, (req) => {
      cancels.push(req.taskId);
      return { ok: true as const, state: "cancelled" as const };
    });
    await nats.nc.flush();
    // A stored message, delivered by a push consumer onto a Parallelic subject (what a client
    // allowed to create consumers could arrange): it comes with a `$JS.ACK.…` reply subject.
    const jsm = await jetstreamManager(nats.nc);
    await jsm.streams.add({ name: "REPLAY", subjects: ["replay.>"] });
    const forged: CancelRequest = { taskId: "t0000000000000000", by: "admin" };
    await jetstream(nats.nc).publish("replay.x", JSON.stringify(forged));
    await jsm.consumers.add("REPLAY", { deliver_subject: taskCancel.subject, ack_policy: AckPolicy.None });
    await waitUntil(() => bus.rejected === 1, 10_000, "the delivery to be rejected");
    assert.deepEqual(cancels, []);
    assert.equal(unwrap(await bus.request(taskCancel, forged)).state, "cancelled", "a real request still works");
    assert.deepEqual(cancels, ["t0000000000000000"]);
  },
});

Deno.test({
  name: "bus answers a request it serves itself in-process, with the same checks and timeout; others go over NATS",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bus = createBus(nats.nc, testLogger());
    // Another bus (another actor's, another process's) asks over NATS.
    const other = createBus(nats.nc, testLogger());
    const stop = new AbortController();
    const seen: string[] = [];
    let reply: unknown = { ok: true, state: "cancelled" };
    let hang = false;
    const sub = bus.serve(taskCancel, (req) => {
      seen.push(req.taskId);
      return hang ? new Promise<never>(() => {}) : reply as { ok: true; state: "cancelled" };
    }, { signal: stop.signal });
    await nats.nc.flush();
    const req: CancelRequest = { taskId: "t0000000000000001", by: "admin" };
    assert.equal(unwrap(await bus.request(taskCancel, req)).state, "cancelled");
    assert.equal(sub.getReceived(), 0, "answered without NATS");
    assert.equal(unwrap(await other.request(taskCancel, req)).state, "cancelled");
    assert.equal(sub.getReceived(), 1, "another bus's request comes over NATS");
    // The handler gets a copy checked against the schema, and its reply is checked too.
    await assert.rejects(bus.request(taskCancel, { taskId: "bad", by: "admin" } as CancelRequest), /not a task id/);
    reply = { ok: true, state: "no-such-state" };
    for (const b of [bus, other]) {
      const bad = await b.request(taskCancel, req);
      assert.equal(bad.ok, false);
      assert.equal(!bad.ok && bad.error.code, "invalid_reply");
      assert.match(!bad.ok ? bad.error.message : "", /^Reply on 'parallelic\.task\.cancel' failed its schema: state: /);
    }
    hang = true;
    await assert.rejects(
      bus.request(taskCancel, req, { timeoutMs: 50 }),
      /No answer on 'parallelic.task.cancel' within 50 ms/,
    );
    // Once stopped, nothing in-process answers: the request goes to NATS, where no one serves it.
    stop.abort();
    await assert.rejects(bus.request(taskCancel, req, { timeoutMs: 500 }), /Cannot reach/);
    assert.equal(seen.length, 5);
  },
});

Deno.test({
  name: "a handler may answer before its promise settles: at once, checked, and only once",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bus = createBus(nats.nc, testLogger());
    const other = createBus(nats.nc, testLogger());
    const answers: Array<() => void> = [];
    let state = "cancelled";
    bus.serve(taskCancel, (_req, _subject, reply) =>
      new Promise((resolve) =>
        answers.push(() => {
          reply({ ok: true, state } as { ok: true; state: "cancelled" });
          // What the promise gives afterwards is not sent again.
          resolve({ ok: true, state: "failed" });
        })
      ));
    await nats.nc.flush();
    const req: CancelRequest = { taskId: "t0000000000000001", by: "admin" };
    const answered = () => waitUntil(() => answers.length > 0).then(() => answers.shift()!());
    for (const b of [bus, other]) {
      const asked = b.request(taskCancel, req);
      await answered();
      assert.equal(unwrap(await asked).state, "cancelled", "the early answer, in-process and over NATS");
    }
    state = "no-such-state";
    const bad = other.request(taskCancel, req);
    await answered();
    const reply = await bad;
    assert.equal(!reply.ok && reply.error.code, "invalid_reply", "an early answer is checked as any");
  },
});

Deno.test({
  name: "bus checks each run spec an assignment carries before sending it, and sends it as it is",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bus = createBus(nats.nc, testLogger());
    const got: Assignment[] = [];
    bus.subscribe(nodeAssign("a"), (m) => void got.push(m));
    await nats.nc.flush();
    const run: Assignment["tasks"][number]["run"] = {
      entrypoint: "run.sh",
      command: null,
      workdir: ".",
      args: [],
      instances: 3,
      matrix: [],
      inputs: null,
      chunk: 1,
      env: { A: "1" },
      cpus: 1,
      memoryBytes: 0,
      gpus: 0,
      timeoutMs: null,
      data: {},
      outputs: [],
      finalize: null,
      upstream: [],
    };
    const assignment = (r: typeof run, index: number): Assignment => ({
      tasks: [{
        taskId: "t0000000000000000",
        digest: `sha256-${"0".repeat(64)}`,
        run: r,
        items: [{ index, attempt: 0 }],
      }],
    });
    bus.publish(nodeAssign("a"), assignment(run, 0));
    bus.publish(nodeAssign("a"), assignment(run, 1));
    assert.throws(() => bus.publish(nodeAssign("a"), assignment({ ...run, instances: 0 }, 2)), /instances/);
    assert.throws(() => bus.publish(nodeAssign("a"), assignment({ ...run, env: { A: 1 as unknown as string } }, 2)));
    await waitUntil(() => got.length === 2);
    assert.deepEqual(got, [assignment(run, 0), assignment(run, 1)]);
  },
});

Deno.test("describeIssue() names the problem in the branch of a reply the value meant", () => {
  const reply = taskCancel.reply;
  const word = (value: unknown) => {
    const parsed = reply.safeParse(value);
    assert.equal(parsed.success, false);
    return describeIssue(parsed.error!, "reply");
  };
  // `ok: true` with a bad field: that field, not "ok should be false".
  assert.match(word({ ok: true, state: 7 }), /^state: /);
  assert.match(word({ ok: true }), /^state: /);
  // More wrong fields than the other branch has problems: still the branch whose `ok` the value says.
  const submit = taskSubmit.reply.safeParse({ ok: true, id: 5, state: 7, instances: "x" });
  assert.match(describeIssue(submit.error!, "reply"), /^id: /);
  // `ok: false` without its error: the error.
  assert.match(word({ ok: false }), /^error: /);
  assert.match(word({ ok: false, error: { code: "x" } }), /^error\.message: /);
  assert.match(word("no object"), /^reply: /);
});

Deno.test({
  name: "bus answers a request only into the requester's own inbox; any other reply subject is dropped and told",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const told: string[] = [];
    const bus = createBus(nats.nc, testLogger(), {
      onReject: (subject, reason) => void told.push(`${subject}: ${reason}`),
    });
    const served: string[] = [];
    bus.serve(taskResultsAll, (batch) => {
      served.push(batch.node);
      return { ok: true as const, accepted: 0, ignored: 0 };
    });
    bus.serve(taskCancel, (req) => {
      served.push(req.taskId);
      return { ok: true as const, state: "cancelled" as const };
    });
    await nats.nc.flush();
    const batch = JSON.stringify({ node: "a", results: [] });
    const cancel = JSON.stringify({ taskId: "t0000000000000000", by: "admin" });
    // Node a's subject: the answer may only go to _INBOX_a.…, never to a manager subject, another node's inbox,
    // the manager's own inbox, or nowhere.
    for (const reply of [taskCancel.subject, "_INBOX_b.x", "_INBOX.x", "_INBOX_ab.x"]) {
      nats.nc.publish(taskResults("a").subject, batch, { reply });
    }
    nats.nc.publish(taskResults("a").subject, batch);
    // A manager subject: the answer goes only to this process's inbox.
    nats.nc.publish(taskCancel.subject, cancel, { reply: "_INBOX_a.x" });
    await waitUntil(() => bus.rejected === 6, 10_000, "six drops");
    assert.deepEqual(served, []);
    assert.equal(told.length, 6);
    assert.match(told[0], /reply subject 'parallelic\.task\.cancel' is not inside '_INBOX_a\.'/);
    // Asked from node a's own inbox, it is answered.
    await using nodeNc = await connectAsNode(nats.server.url, "a");
    const reply = unwrap(await createBus(nodeNc, testLogger()).request(taskResults("a"), { node: "a", results: [] }));
    assert.equal(reply.accepted, 0);
    assert.deepEqual(served, ["a"]);
  },
});

Deno.test({
  name: "bus answers a request that failed as its own connection drains with 'stopping', not the failure",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const serverNc = await connect({ servers: nats.server.url });
    let release = () => {};
    const held = new Promise<void>((r) => release = r);
    createBus(serverNc, testLogger()).serve(taskResultsAll, async () => {
      await held;
      // What a handler meets once its connection drains: a new request is refused.
      await serverNc.request("parallelic.nowhere", "", { timeout: 1000 });
      return { ok: true as const, accepted: 0, ignored: 0 };
    });
    await serverNc.flush();
    await using nodeNc = await connectAsNode(nats.server.url, "a");
    const asked = createBus(nodeNc, testLogger()).request(taskResults("a"), { node: "a", results: [] });
    await waitUntil(() => serverNc.stats().inMsgs > 0);
    const drained = serverNc.drain();
    release();
    const reply = await asked;
    await drained;
    assert.equal(reply.ok, false);
    assert.equal(!reply.ok && reply.error.code, "stopping");
    assert.throws(() => unwrap(reply), /stopping/);
  },
});

Deno.test({
  name: "an inProcess subscription takes what its bus publishes once, at once; the rest still over NATS",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const nc2 = await connect({ servers: nats.server.url });
    try {
      const here = createBus(nats.nc, testLogger());
      const there = createBus(nc2, testLogger());
      const fast: string[] = [];
      const plain: string[] = [];
      const remote: string[] = [];
      here.subscribe(nodeHeartbeatAll, (m) => void fast.push(m.name), { inProcess: true });
      here.subscribe(nodeHeartbeatAll, (m) => void plain.push(m.name));
      there.subscribe(nodeHeartbeatAll, (m) => void remote.push(m.name));
      await Promise.all([nats.nc.flush(), nc2.flush()]);
      here.publish(nodeHeartbeat("a"), hb("a"));
      // In-process: there before nats-server could have sent anything back.
      await Promise.resolve();
      await Promise.resolve();
      assert.deepEqual(fast, ["a"]);
      there.publish(nodeHeartbeat("b"), hb("b"));
      await waitUntil(() => fast.length === 2 && plain.length === 2 && remote.length === 2);
      // The copy of 'a' that came back through nats-server was skipped: each message once, to each subscription.
      await Promise.all([nats.nc.flush(), nc2.flush()]);
      assert.deepEqual(fast, ["a", "b"]);
      assert.deepEqual(plain.sort(), ["a", "b"]);
      assert.deepEqual(remote.sort(), ["a", "b"]);
    } finally {
      await nc2.close();
    }
  },
});

Deno.test("subjectMatches() follows NATS wildcards: * one token, > one or more at the end", () => {
  const m = (pattern: string, subject: string) => subjectMatches(pattern.split("."), subject.split("."));
  assert.ok(m("a.*.c", "a.b.c"));
  assert.ok(!m("a.*.c", "a.b.d"));
  assert.ok(!m("a.*", "a.b.c"));
  assert.ok(m("a.>", "a.b.c"));
  assert.ok(!m("a.>", "a"));
  assert.ok(m("a.b", "a.b"));
  assert.ok(!m("a.b", "a.b.c"));
});
