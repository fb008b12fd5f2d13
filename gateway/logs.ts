/**
 * Reading an instance's log from the log stream, once or following it.
 *
 * @module
 */
import { jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
import { retryJetStream } from "../core/jetstream_retry.ts";
import { LOG_STREAM, logSubjectsOfInstance } from "../core/schema.ts";

/** Options of {@linkcode readLog}. */
export interface ReadLogOptions {
  /** Keep the stream open while the instance may still write. */
  follow?: boolean;
  /** Tells whether the instance has ended (no more output will come). */
  ended?: () => Promise<boolean>;
  /** How often `ended` is asked while following. @default {500} */
  pollMs?: number;
  /**
   * Tells whether `node` ran `attempt` of the instance; chunks of any other
   * writer are left out (a node may only write under its own name, and only
   * what it ran is shown). Without it every chunk is shown.
   */
  accept?: (node: string, attempt: number) => boolean | Promise<boolean>;
  /** Ends a followed stream (the gateway shutting down), as if the instance had ended. */
  signal?: AbortSignal;
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
  // Every node writes under its own name: parallelic.log.<task>.<index>.<node>.
  const subject = logSubjectsOfInstance(taskId, index);
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
            const node = m.subject.slice(m.subject.lastIndexOf(".") + 1);
            const attempt = Number(m.header?.get("Parallelic-Attempt") ?? "-1");
            if (!options.accept || await options.accept(node, attempt)) controller.enqueue(m.data);
            seq = m.seq;
            continue;
          }
          if (!options.follow || lastLook || options.signal?.aborted) break;
          // Nodes report an instance's end only after its log is stored: once it
          // has ended, one more look finds whatever came meanwhile.
          if (await options.ended?.()) lastLook = true;
          else await pause(pollMs, options.signal);
        }
        if (!cancelled) controller.close();
      } catch (e) {
        if (!cancelled) controller.error(e);
      }
    },
  });
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener("abort", done, { once: true });
  });
}
