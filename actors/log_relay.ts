/**
 * The log relay: nodes send their instances' output, batched, on their own
 * subject (`parallelic.node.<name>.logs`), and the relay stores each chunk
 * in the LOGS stream under the instance's log subject
 * (`parallelic.log.<task>.<index>.<node>`, as readers expect) only when the
 * node holds that attempt of that instance now. A node therefore publishes
 * on no subject JetStream answers, writes no log of an instance it does not
 * hold, and cannot fill the stream with chunks of other tasks. The last
 * words of an attempt the node lost a moment ago (a cancel's kill, a stale
 * attempt) are kept too: an attempt a node sent chunks of while it held it
 * stays open to it for {@linkcode TAIL_MS}.
 *
 * The reply comes once every chunk of the batch is stored (or dropped), so
 * a node keeps a chunk until then and sends it again after a failure; the
 * message id (task, index, attempt, chunk number) lets the stream drop a
 * chunk stored twice.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { jetstream } from "@nats-io/jetstream";
import type { Bus } from "../core/bus.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { logSubject } from "../core/schema.ts";
import { type LogBatchReply, type LogChunk, nodeLogsAll } from "../core/subjects.ts";
import { retryJetStream } from "../core/jetstream_retry.ts";
import type { AssignmentView } from "./object_service.ts";

/** What the relay needs. */
export interface LogRelayDeps {
  bus: Bus;
  /** The manager's connection: chunks are published into the LOGS stream on it. */
  nc: NatsConnection;
  log: Logger;
  clock: Clock;
  assignments: Pick<AssignmentView, "attemptOf">;
  /** Told of chunks dropped from a batch (the manager audits them, rate-limited). */
  onDropped?: (node: string, what: string) => void;
}

/** How long an attempt a node sent chunks of stays open to it after it lost the attempt. */
export const TAIL_MS = 60_000;
/** Attempts remembered for their tails, at most (the oldest go first). */
const TAILS_KEPT = 20_000;

/** Counts of the relay, for tests and metrics. */
export interface LogRelay {
  /** Chunks stored so far. */
  stored(): number;
  /** Chunks dropped so far: not of an attempt their node holds. */
  dropped(): number;
}

/** Relays nodes' log chunks into the LOGS stream until `signal` aborts. */
export function createLogRelay(deps: LogRelayDeps, options: { signal: AbortSignal }): LogRelay {
  const { bus, log, assignments } = deps;
  const js = jetstream(deps.nc);
  let stored = 0;
  let dropped = 0;
  /** When each attempt (`node/task/index/attempt`) was last seen held, oldest first. */
  const heldAt = new Map<string, number>();

  /** True when `node` holds the chunk's attempt, or held it (and sent chunks of it) within TAIL_MS. */
  const mayWrite = (node: string, c: LogChunk, now: number) => {
    const key = `${node}/${c.taskId}/${c.index}/${c.attempt}`;
    if (assignments.attemptOf(node, c.taskId, c.index) === c.attempt) {
      heldAt.delete(key);
      heldAt.set(key, now);
      if (heldAt.size > TAILS_KEPT) heldAt.delete(heldAt.keys().next().value!);
      return true;
    }
    const at = heldAt.get(key);
    return at !== undefined && now - at < TAIL_MS;
  };

  const store = (node: string, c: LogChunk) => {
    const h = headers();
    h.set("Parallelic-Attempt", String(c.attempt));
    h.set("Parallelic-Stream", c.stream);
    const data = new Uint8Array(Buffer.from(c.data, "base64"));
    const msgID = `${c.taskId}.${c.index}.${c.attempt}.${c.seq}`;
    // Retried through a stream leader election; a failure after that fails the batch and the node sends it again.
    return retryJetStream(() => js.publish(logSubject(c.taskId, c.index, node), data, { headers: h, msgID }), 8_000);
  };

  bus.serve(nodeLogsAll, async ({ node, chunks }): Promise<LogBatchReply> => {
    const now = deps.clock.now();
    const held = chunks.filter((c) => mayWrite(node, c, now));
    const foreign = chunks.length - held.length;
    if (foreign > 0) {
      dropped += foreign;
      const first = chunks.find((c) => !held.includes(c))!;
      const what = `${foreign} log chunk(s), first of ${first.taskId}/${first.index} attempt ${first.attempt}`;
      log.warn("logs:dropped", { node, what });
      deps.onDropped?.(node, what);
    }
    await Promise.all(held.map((c) => store(node, c)));
    stored += held.length;
    return { ok: true, stored: held.length, dropped: foreign };
  }, { signal: options.signal });

  return { stored: () => stored, dropped: () => dropped };
}
