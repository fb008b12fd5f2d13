/**
 * A small structured logger with scopes, in the manner of graphile/worker's
 * `logger.scope({ workerId })`: every line carries the fields of its scope.
 *
 * @module
 */

/** Log levels, least to most severe. */
export type LogLevel = "debug" | "info" | "warn" | "error";

const LEVELS: Record<LogLevel, number> = {
  debug: 10,
  info: 20,
  warn: 30,
  error: 40,
};

/** Fields attached to a log line. */
export type LogFields = Record<string, unknown>;

/** A scoped, structured logger. */
export interface Logger {
  /** Logs at `debug` level. */
  debug(event: string, fields?: LogFields): void;
  /** Logs at `info` level. */
  info(event: string, fields?: LogFields): void;
  /** Logs at `warn` level. */
  warn(event: string, fields?: LogFields): void;
  /** Logs at `error` level. */
  error(event: string, fields?: LogFields): void;
  /**
   * Notes that this process reached `step` (of a submit, a run, a result)
   * now: a line `<epoch ms> <pid> <step>` in the trace file, when the logger
   * has one (see {@linkcode LoggerOptions.traceFile}); otherwise nothing.
   */
  step(step: string): void;
  /** Returns a child logger whose lines all carry `fields`. */
  scope(fields: LogFields): Logger;
}

/** Options of {@linkcode createLogger}. */
export interface LoggerOptions {
  /** Lowest level written. @default {"info"} */
  level?: LogLevel;
  /** `json`: one JSON object per line; `text`: human-readable. @default {"text"} */
  format?: "json" | "text";
  /** Where lines go. @default {console.error} */
  write?: (line: string) => void;
  /**
   * File that {@linkcode Logger.step} appends to (`PARALLELIC_TRACE`, for
   * latency work: `bench/latency.ts --trace`). The processes of a cluster on
   * one machine can share it: each line is one append, and their clocks agree.
   */
  traceFile?: string;
}

/**
 * Creates a logger writing to stderr (or `options.write`).
 *
 * @example
 * ```ts
 * const log = createLogger({ level: "debug" }).scope({ actor: "task" });
 * log.info("task:submitted", { taskId: "t1" });
 * ```
 */
export function createLogger(
  options: LoggerOptions = {},
  base: LogFields = {},
  inheritedStep?: (step: string) => void,
): Logger {
  const min = LEVELS[options.level ?? "info"];
  const format = options.format ?? "text";
  const write = options.write ?? ((line: string) => console.error(line));
  const emit = (level: LogLevel, event: string, fields: LogFields = {}) => {
    if (LEVELS[level] < min) return;
    const all = { ...base, ...fields };
    if (format === "json") {
      write(
        JSON.stringify({
          time: new Date().toISOString(),
          level,
          event,
          ...all,
        }),
      );
      return;
    }
    const rest = Object.entries(all).map(([k, v]) => `${k}=${typeof v === "string" ? v : JSON.stringify(v)}`).join(" ");
    write(
      `${new Date().toISOString()} ${level.toUpperCase().padEnd(5)} ${event}${rest ? " " + rest : ""}`,
    );
  };
  // A scope shares its parent's trace file (one handle per process).
  const step = inheritedStep ?? (options.traceFile === undefined ? () => {} : stepWriter(options.traceFile));
  const scoped = (fields: LogFields): Logger => createLogger({ ...options, traceFile: undefined }, fields, step);
  return {
    debug: (e, f) => emit("debug", e, f),
    info: (e, f) => emit("info", e, f),
    warn: (e, f) => emit("warn", e, f),
    error: (e, f) => emit("error", e, f),
    step,
    scope: (fields) => scoped({ ...base, ...fields }),
  };
}

/**
 * Appends `<epoch ms> <pid> <step>` lines to `path`, opened at the first
 * step. Tracing never breaks what it traces: a file that cannot be opened or
 * written is reported once on stderr, and steps are dropped from then on.
 */
function stepWriter(path: string): (step: string) => void {
  let file: Deno.FsFile | null | undefined;
  const encoder = new TextEncoder();
  return (step) => {
    if (file === null) return;
    try {
      file ??= Deno.openSync(path, { append: true, create: true });
      // One write per line in append mode: lines of several processes never interleave.
      file.writeSync(
        encoder.encode(`${(performance.timeOrigin + performance.now()).toFixed(3)} ${Deno.pid} ${step}\n`),
      );
    } catch (e) {
      try {
        file?.close();
      } catch { /* already unusable */ }
      file = null;
      console.error(
        `Cannot write trace steps to '${path}' (PARALLELIC_TRACE) as ${(e as Error).message}: tracing is off`,
      );
    }
  };
}

/** A logger that drops everything: for tests that do not read logs. */
export const silentLogger: Logger = createLogger({
  write: () => {},
  level: "error",
});
