/**
 * Reading an instance's log from the log stream, once or following it.
 *
 * @module
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { UnavailableError } from "../core/errors.ts";
import { LOG_STREAM, logSubject } from "../core/schema.ts";

/**
 * Retries a JetStream API call that timed out: while a clustered stream
 * elects a new leader (a NATS server was lost), its API does not answer for
 * a few seconds.
 */
export async function retryJetStream<T>(fn: () => Promise<T>, totalMs = 20_000): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      const name = (e as Error).name ?? "";
      if (Date.now() > deadline || !/Timeout|NoResponders|Request/i.test(`${name} ${(e as Error).message}`)) {
        throw new UnavailableError(`Cannot read from JetStream: ${(e as Error).message}`, { cause: e });
      }
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** Options of {@linkcode readLog}. */
export interface ReadLogOptions {
  /** Keep the stream open while the instance may still write. */
  follow?: boolean;
  /** Tells whether the instance has ended (no more output will come). */
  ended?: () => Promise<boolean>;
  /** How often `ended` is asked while following. @default {500} */
  pollMs?: number;
}

/**
 * Returns the log of instance `index` of `taskId` as a byte stream. It reads
 * with JetStream's direct get (any replica answers, no consumer to place),
 * so that it keeps working while a clustered stream elects a new leader.
 */
export async function readLog(
  nc: NatsConnection,
  taskId: string,
  index: number,
  options: ReadLogOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const subject = logSubject(taskId, index);
  const jsm = await retryJetStream(() => jetstreamManager(nc, { timeout: 2000 }));
  const pollMs = options.pollMs ?? 500;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
    async start(controller) {
      let seq = 0;
      let lastLook = false;
      try {
        while (!cancelled) {
          const m = await retryJetStream(() =>
            jsm.direct.getMessage(LOG_STREAM, { next_by_subj: subject, seq: seq + 1 })
          );
          if (m) {
            controller.enqueue(m.data);
            seq = m.seq;
            continue;
          }
          if (!options.follow || lastLook) break;
          // Nodes report an instance's end only after its log is stored: once it
          // has ended, one more look finds whatever came meanwhile.
          if (await options.ended?.()) lastLook = true;
          else await new Promise((r) => setTimeout(r, pollMs));
        }
        if (!cancelled) controller.close();
      } catch (e) {
        if (!cancelled) controller.error(e);
      }
    },
  });
}
