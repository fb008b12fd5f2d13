/**
 * An attempt's stdout and stderr as they come: counted, the last stderr line
 * kept (its result carries it), and sent on to the manager's log relay
 * through the node's log sender, a bounded number of sends at a time.
 *
 * @module
 */
import type { Logger } from "../core/log.ts";
import { lastLineKeeper } from "./last_line.ts";
import type { LogSender, LogSource } from "./log_sender.ts";
import type { OutputStream } from "./spawn.ts";

/** The log of one attempt, from {@linkcode attemptLog}. */
export interface AttemptLog {
  /** Takes output as the process writes it (the spawner's `onOutput`). */
  onOutput(chunk: Uint8Array, which: OutputStream): Promise<void>;
  /** Resolves once every chunk was sent (or its failure logged). */
  sent(): Promise<void>;
  /** Bytes written so far. */
  bytes(): number;
  /** The last non-empty stderr line, clipped; undefined when there was none. */
  lastStderr(): string | undefined;
}

/** Starts the log of the attempt `source`. */
export function attemptLog(logs: LogSender, source: LogSource, log: Logger): AttemptLog {
  const publishes: Promise<unknown>[] = [];
  let chunkNo = 0;
  let logBytes = 0;
  const stderrTail = lastLineKeeper();
  return {
    async onOutput(chunk, which) {
      logBytes += chunk.byteLength;
      if (which === "stderr") stderrTail.add(chunk);
      // Through the manager, which stores the chunks of instances this node holds (actors/log_relay.ts).
      publishes.push(
        logs.send(source, which, chunk, () => chunkNo++).catch((e) => {
          log.warn("node:log-publish-failed", { taskId: source.taskId, index: source.index, error: String(e) });
        }),
      );
      if (publishes.length > 64) await Promise.all(publishes.splice(0));
    },
    sent: async () => void await Promise.all(publishes),
    bytes: () => logBytes,
    lastStderr: () => stderrTail.line(),
  };
}
