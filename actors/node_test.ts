import assert from "node:assert/strict";
import { join } from "node:path";
import { createBus, unwrap } from "../core/bus.ts";
import { ManualClock } from "../core/clock.ts";
import {
  type NodeEvent,
  nodeHeartbeat,
  nodeRegister,
  nodeRejoin,
  nodesDrain,
  nodesEvent,
  nodesList,
} from "../core/schema.ts";
import { connectAsNode, startTestNats, testLogger, waitUntil } from "../tests/kit/mod.ts";
import { createNodeActor } from "./node.ts";

const register = {
  slots: 2,
  cpus: 2,
  memoryBytes: 2 ** 30,
  gpus: 0,
  labels: { zone: "a" },
  version: "t",
  hostname: "h",
};

Deno.test({
  name: "node actor registers nodes, keeps their lease, and loses a silent one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using nats = await startTestNats();
    const kv = await Deno.openKv(join(nats.dir, "state.kv"));
    const bus = createBus(nats.nc, testLogger());
    const clock = new ManualClock();
    const abort = new AbortController();
    const actor = createNodeActor({ bus, kv, clock, log: testLogger() }, {
      signal: abort.signal,
      heartbeatMs: 100,
      leaseMs: 1000,
    });
    await actor.ready;
    const events: NodeEvent[] = [];
    const rejoins: string[] = [];
    bus.subscribe(nodesEvent, (e) => void events.push(e));
    bus.subscribe(nodeRejoin("n1"), (r) => void rejoins.push(r.reason));
    await nats.nc.flush();
    await using nodeNc = await connectAsNode(nats.server.url, "n1");
    const nodeBus = createBus(nodeNc, testLogger());
    const reply = unwrap(await nodeBus.request(nodeRegister("n1"), { name: "n1", holding: [], ...register }));
    assert.equal(reply.leaseMs, 1000);
    await waitUntil(() => events.length === 1);
    assert.equal(events[0].kind, "joined");
    assert.deepEqual(events[0].node.labels, { zone: "a" });

    clock.advance(800);
    bus.publish(nodeHeartbeat("n1"), { name: "n1", sentAt: clock.now(), usedSlots: 1, holding: [] });
    await nats.nc.flush();
    await waitUntil(async () => unwrap(await bus.request(nodesList, {})).nodes[0].usedSlots === 1);
    clock.advance(800);
    assert.equal(events.length, 1, "a node that heartbeats within its lease stays");

    const drained = unwrap(await bus.request(nodesDrain, { name: "n1", drain: true }));
    assert.equal(drained.node.state, "draining");
    // Answered in-process, but only once the event reached this process's subscribers (the task actor among
    // them): a submit right after a drain never lands on the drained node.
    assert.equal(events.length, 2, "the event came before the answer");
    assert.equal(events[1].kind, "updated");

    clock.advance(1200);
    await waitUntil(() => events.length === 3, 5000, "lost event");
    assert.equal(events[2].kind, "lost");
    assert.equal(unwrap(await bus.request(nodesList, {})).nodes[0].state, "lost");

    bus.publish(nodeHeartbeat("n1"), { name: "n1", sentAt: clock.now(), usedSlots: 0, holding: [] });
    await waitUntil(() => rejoins.length === 1, 5000, "rejoin order");
    assert.equal(rejoins[0], "lease expired");

    await assert.rejects(bus.request(nodesDrain, { name: "ghost", drain: true }).then(unwrap), /no such node/);
    abort.abort();
    await actor.stopped;
    kv.close();
  },
});
