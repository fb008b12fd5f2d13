/**
 * Reading an instance's log from the log stream, once or following it.
 *
 * @module
 */
import { DeliverPolicy, jetstream, jetstreamManager } from "@nats-io/jetstream";
import type { NatsConnection } from "@nats-io/transport-node";
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
}

/** Returns the log of instance `index` of `taskId` as a byte stream. */
export async function readLog(
  nc: NatsConnection,
  taskId: string,
  index: number,
  options: ReadLogOptions = {},
): Promise<ReadableStream<Uint8Array>> {
  const subject = logSubjectsOfInstance(taskId, index);
  const jsm = await jetstreamManager(nc);
  const info = await jsm.streams.info(LOG_STREAM, { subjects_filter: subject });
  const stored = Object.values(info.state.subjects ?? {}).reduce((a, b) => a + b, 0);
  if (!options.follow && stored === 0) return new ReadableStream({ start: (c) => c.close() });
  const consumer = await jetstream(nc).consumers.get(LOG_STREAM, {
    // A single subject (not an array) keeps this working on nats-server 2.9.
    filter_subjects: subject,
    deliver_policy: DeliverPolicy.All,
  });
  const pollMs = options.pollMs ?? 500;
  let cancelled = false;
  return new ReadableStream<Uint8Array>({
    cancel() {
      cancelled = true;
    },
    async start(controller) {
      let seen = 0;
      try {
        for (;;) {
          if (cancelled) break;
          const batch = await consumer.fetch({ max_messages: 256, expires: Math.max(1000, pollMs) });
          let got = 0;
          let pending = Infinity;
          for await (const m of batch) {
            const node = m.subject.slice(m.subject.lastIndexOf(".") + 1);
            const attempt = Number(m.headers?.get("Parallelic-Attempt") ?? "-1");
            if (!options.accept || await options.accept(node, attempt)) controller.enqueue(m.data);
            got++;
            seen++;
            pending = m.info.pending;
          }
          if (!options.follow) {
            if (pending === 0 || (got === 0 && seen >= stored)) break;
            continue;
          }
          // Nodes report an instance's end only after its log is stored, so once it
          // has ended and nothing is pending, the log is complete.
          if ((got === 0 || pending === 0) && (await options.ended?.())) break;
        }
        if (!cancelled) controller.close();
      } catch (e) {
        if (!cancelled) controller.error(e);
      } finally {
        await consumer.delete().catch(() => {});
      }
    },
  });
}
