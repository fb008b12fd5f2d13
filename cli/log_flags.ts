/**
 * The logger that `--log-level` and `--log-format` ask for, shared by the
 * manager, the node and the client commands.
 *
 * @module
 */
import { createLogger, type Logger, type LogLevel } from "../core/log.ts";
import { usage } from "./client.ts";

/** A logger as `--log-level` (debug, info, warn, error) and `--log-format` (text, json) in `flags` ask. */
export function logger(flags: Record<string, unknown>): Logger {
  const level = flags["log-level"] ?? "info";
  if (!["debug", "info", "warn", "error"].includes(String(level))) {
    usage(`Log level '${level}' must be one of debug, info, warn, error`);
  }
  return createLogger({
    level: (flags["log-level"] as LogLevel) ?? "info",
    format: flags["log-format"] === "json" ? "json" : "text",
    // Step timestamps for latency work (bench/latency.ts --trace); unset, steps cost nothing.
    traceFile: Deno.env.get("PARALLELIC_TRACE") || undefined,
  });
}
