import assert from "node:assert/strict";
import { jetstreamManager } from "@nats-io/jetstream";
import { createBus } from "../core/bus.ts";
import { systemClock } from "../core/clock.ts";
import { LOG_STREAM, logSubject } from "../core/schema.ts";
import { LOG_CHUNK_BYTES } from "../core/subjects.ts";
import { createLogSender } from "../node/log_sender.ts";
import { connectAsNode, startTestNats, testLogger, waitUntil } from "../tests/kit/mod.ts";
import { ensureStorage } from "../services/workspace.ts";
import { createLogRelay, TAIL_MS } from "./log_relay.ts";
import type { AssignmentView } from "./object_service.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const TASK = "t0123456789abcdef";
const text = new TextEncoder();

/** A NATS server with the LOGS stream, and node n1's log sender. */
async function setup(retryMs?: number) {
  const nats = await startTestNats();
  await ensureStorage(nats.nc);
  const nodeNc = await connectAsNode(nats.server.url, "n1");
  const sender = createLogSender({
    bus: createBus(nodeNc, testLogger()),
    name: "n1",
    clock: systemClock,
    log: testLogger(),
    retryMs,
  });
  const abort = new AbortController();
  const clock = { ...systemClock, nowMs: Date.now(), now: () => clock.nowMs };
  /** Starts the relay, with the attempts it finds held. */
  const relay = (attemptOf: AssignmentView["attemptOf"], onDropped?: (node: string, what: string) => void) =>
    createLogRelay({
      bus: createBus(nats.nc, testLogger()),
      nc: nats.nc,
      log: testLogger(),
      clock,
      assignments: { attemptOf },
      onDropped,
    }, {
      signal: abort.signal,
    });
  return {
    nats,
    sender,
    relay,
    clock,
    async [Symbol.asyncDispose]() {
      sender.stop();
      abort.abort();
      await nodeNc.close();
      await nats[Symbol.asyncDispose]();
    },
  };
}

Deno.test({
  name: "log relay stores chunks of attempts a node holds, in order, and drops and reports the rest",
  ...opts,
  async fn() {
    await using env = await setup();
    const { nats, sender } = env;
    const held = new Map([[`n1/${TASK}/0`, 2]]);
    const dropped: string[] = [];
    const relay = env.relay(
      (node, taskId, index) => held.get(`${node}/${taskId}/${index}`) ?? null,
      (node, what) => dropped.push(`${node}: ${what}`),
    );
    let seq = 0;
    const next = () => seq++;
    // Many small chunks and one longer than a chunk: all travel in a few batches.
    const lines = Array.from(
      { length: 300 },
      (_, i) => sender.send({ taskId: TASK, index: 0, attempt: 2 }, "stdout", text.encode(`line ${i}\n`), next),
    );
    const big = new Uint8Array(LOG_CHUNK_BYTES * 2 + 10).fill(65);
    await Promise.all([...lines, sender.send({ taskId: TASK, index: 0, attempt: 2 }, "stderr", big, next)]);
    // Another attempt, another instance: not held, dropped; the send still ends (nothing to resend).
    await sender.send({ taskId: TASK, index: 0, attempt: 1 }, "stdout", text.encode("stale\n"), next);
    await sender.send({ taskId: TASK, index: 1, attempt: 0 }, "stdout", text.encode("foreign\n"), next);
    assert.equal(relay.stored(), 303);
    assert.equal(relay.dropped(), 2);
    assert.equal(dropped.length, 2);
    assert.match(dropped[1], new RegExp(`^n1: 1 log chunk\\(s\\), first of ${TASK}/1 attempt 0`));
    const jsm = await jetstreamManager(nats.nc);
    const info = await jsm.streams.info(LOG_STREAM, { subjects_filter: ">" });
    assert.deepEqual(info.state.subjects, { [logSubject(TASK, 0, "n1")]: 303 });
    const first = await jsm.streams.getMessage(LOG_STREAM, { seq: 1 });
    assert.equal(first?.string(), "line 0\n");
    assert.equal(first?.header?.get("Parallelic-Attempt"), "2");
    assert.equal(sender.pendingBytes(), 0);

    // The attempt ends on the manager (a cancel): its process's last words still count for a while, then not.
    held.clear();
    await sender.send({ taskId: TASK, index: 0, attempt: 2 }, "stderr", text.encode("killed\n"), next);
    assert.equal(relay.stored(), 304);
    env.clock.nowMs += TAIL_MS;
    await sender.send({ taskId: TASK, index: 0, attempt: 2 }, "stderr", text.encode("too late\n"), next);
    assert.equal(relay.stored(), 304);
    assert.equal(relay.dropped(), 3);
  },
});

Deno.test({
  name: "log sender keeps chunks until the relay stores them, through a time without a relay",
  ...opts,
  async fn() {
    await using env = await setup(50);
    const { nats, sender } = env;
    let seq = 0;
    let stored = false;
    const sent = sender.send({ taskId: TASK, index: 0, attempt: 0 }, "stdout", text.encode("kept\n"), () => seq++)
      .then(() => stored = true);
    // No relay yet: the chunk waits on the node.
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(stored, false);
    assert.equal(sender.pendingBytes(), 5);
    const relay = env.relay(() => 0);
    await sent;
    await waitUntil(() => relay.stored() === 1);
    const jsm = await jetstreamManager(nats.nc);
    const msg = await jsm.streams.getMessage(LOG_STREAM, { last_by_subj: logSubject(TASK, 0, "n1") });
    assert.equal(msg?.string(), "kept\n");
    // Stopping gives up what is left, and the sends say so.
    sender.stop();
    await assert.rejects(
      sender.send({ taskId: TASK, index: 0, attempt: 0 }, "stdout", text.encode("late\n"), () => seq++),
      /the node stops/,
    );
  },
});
