/**
 * Reading an instance's log from the log stream, once or following it: as
 * the bytes the instance wrote, or as one JSON line per chunk that says
 * which attempt and stream (stdout or stderr) wrote it and when.
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
  /** Only the chunks of this attempt (numbered from 0). */
  attempt?: number;
  /** Start after this log stream sequence (a reader resuming where it was cut off). */
  afterSeq?: number;
  /** "text": the bytes as written; "ndjson": one {@linkcode LogChunk} per line. @default {"text"} */
  format?: "text" | "ndjson";
}

/** One chunk of output in an `ndjson` log. */
export interface LogChunk {
  /** Its log stream sequence: give it as `after` to resume after it. */
  seq: number;
  attempt: number;
  stream: "stdout" | "stderr";
  /** When it was stored, ms since the epoch. */
  at: number;
  /** The chunk as text (a character split across chunks is kept whole, in the later one). */
  text: string;
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
      let seq = options.afterSeq ?? 0;
      let lastLook = false;
      const encoder = new TextEncoder();
      // One decoder per attempt and stream: a chunk may end inside a character the next one finishes.
      const decoders = new Map<string, TextDecoder>();
      const emit = (m: { seq: number; data: Uint8Array; time: Date }, attempt: number, stream: string) => {
        if (options.format !== "ndjson") return controller.enqueue(m.data);
        const key = `${attempt}/${stream}`;
        let decoder = decoders.get(key);
        if (!decoder) decoders.set(key, decoder = new TextDecoder());
        const chunk: LogChunk = {
          seq: m.seq,
          attempt,
          stream: stream === "stderr" ? "stderr" : "stdout",
          at: m.time.getTime(),
          text: decoder.decode(m.data, { stream: true }),
        };
        controller.enqueue(encoder.encode(`${JSON.stringify(chunk)}\n`));
      };
      try {
        while (!cancelled) {
          const m = await retryJetStream(() =>
            jsm.direct.getMessage(LOG_STREAM, { next_by_subj: subject, seq: seq + 1 })
          );
          if (m) {
            const node = m.subject.slice(m.subject.lastIndexOf(".") + 1);
            const attempt = Number(m.header?.get("Parallelic-Attempt") ?? "-1");
            const wanted = options.attempt === undefined || options.attempt === attempt;
            if (wanted && (!options.accept || await options.accept(node, attempt))) {
              emit(m, attempt, m.header?.get("Parallelic-Stream") ?? "stdout");
            }
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
