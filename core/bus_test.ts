import assert from "node:assert/strict";
import { AckPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import { startTestNats, testLogger, waitUntil } from "../tests/harness.ts";
import { createBus, unwrap } from "./bus.ts";
import { type CancelRequest, type Heartbeat, nodeHeartbeat, nodeHeartbeatAll, taskCancel } from "./schema.ts";

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
