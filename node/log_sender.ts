/**
 * Log chunks on their way to the manager's log relay
 * (`actors/log_relay.ts`): batched (a few requests in flight, the rest gather
 * meanwhile, many instances' chunks in one message), kept until the relay
 * says they are stored, sent again after a failure (the stream drops a chunk
 * stored twice by its message id).
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type Bus, unwrap } from "../core/bus.ts";
import type { Clock, TimerId } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { LOG_BATCH_BYTES, LOG_CHUNK_BYTES, type LogChunk, nodeLogs } from "../core/subjects.ts";

/** What the sender needs. */
export interface LogSenderDeps {
  bus: Bus;
  /** The node's name. */
  name: string;
  clock: Clock;
  log: Logger;
  /** One batch's wait for the relay. */
  timeoutMs?: number;
  /** Wait before sending a batch again after a failure. */
  retryMs?: number;
}

/** Which instance attempt a chunk is of. */
export interface LogSource {
  taskId: string;
  index: number;
  attempt: number;
}

/** The sender of {@linkcode createLogSender}. */
export interface LogSender {
  /**
   * Queues output of an attempt (split into chunks of at most
   * `LOG_CHUNK_BYTES`); resolves once the relay stored it (or dropped it as
   * not held), rejects if the sender stops first.
   */
  send(source: LogSource, stream: "stdout" | "stderr", bytes: Uint8Array, seq: () => number): Promise<void>;
  /** Bytes queued or in flight, not yet acknowledged. */
  pendingBytes(): number;
  /** Stops sending; what is not acknowledged is given up. */
  stop(): void;
}

/**
 * Batches in flight at once: the relay's round trip to the stream overlaps
 * the next batch's; they are stored in the order sent but after a failure.
 */
const BATCHES_IN_FLIGHT = 3;

interface Pending {
  chunk: LogChunk;
  bytes: number;
  done: () => void;
  fail: (e: Error) => void;
}

/** Creates the node's log sender. */
export function createLogSender(deps: LogSenderDeps): LogSender {
  const { bus, name, clock, log } = deps;
  const timeoutMs = deps.timeoutMs ?? 10_000;
  const retryMs = deps.retryMs ?? 1000;
  const queue: Pending[] = [];
  let inFlight = 0;
  let pendingBytes = 0;
  let retry: TimerId | undefined;
  let stopped = false;

  /** Sends batches while fewer than `BATCHES_IN_FLIGHT` are out; chunks that come meanwhile gather. */
  function flush(): void {
    while (inFlight < BATCHES_IN_FLIGHT && !stopped && retry === undefined && queue.length > 0) sendBatch();
  }

  function sendBatch(): void {
    const batch: Pending[] = [];
    let size = 0;
    while (queue.length > 0 && (batch.length === 0 || size + queue[0].bytes <= LOG_BATCH_BYTES)) {
      const p = queue.shift()!;
      size += p.bytes;
      batch.push(p);
    }
    inFlight++;
    bus.request(nodeLogs(name), { node: name, chunks: batch.map((p) => p.chunk) }, { timeoutMs }).then(unwrap).then(
      () => {
        inFlight--;
        for (const p of batch) pendingBytes -= p.bytes, p.done();
        flush();
      },
      (e) => {
        inFlight--;
        log.warn("node:logs-unacknowledged", { count: batch.length, error: (e as Error).message });
        // Back at the front; sent again a little later.
        queue.unshift(...batch);
        if (stopped || retry !== undefined) return;
        retry = clock.setTimeout(() => {
          retry = undefined;
          flush();
        }, retryMs);
      },
    );
  }

  const enqueue = (chunk: LogChunk, bytes: number) =>
    new Promise<void>((done, fail) => {
      if (stopped) return fail(new Error("the node stops"));
      queue.push({ chunk, bytes, done, fail });
      pendingBytes += bytes;
    });

  return {
    send(source, stream, bytes, seq) {
      const sent: Promise<void>[] = [];
      for (let at = 0; at < bytes.byteLength || at === 0; at += LOG_CHUNK_BYTES) {
        const part = bytes.subarray(at, at + LOG_CHUNK_BYTES);
        const data = Buffer.from(part.buffer, part.byteOffset, part.byteLength).toString("base64");
        sent.push(enqueue({ ...source, stream, seq: seq(), data }, part.byteLength));
        if (bytes.byteLength === 0) break;
      }
      // Chunks that come while a batch is in flight wait for it and travel together.
      queueMicrotask(flush);
      return Promise.all(sent).then(() => {});
    },
    pendingBytes: () => pendingBytes,
    stop() {
      stopped = true;
      if (retry !== undefined) clock.clearTimeout(retry);
      for (const p of queue.splice(0)) p.fail(new Error("the node stops"));
    },
  };
}
