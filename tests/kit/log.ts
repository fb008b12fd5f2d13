/**
 * The logger of tests: quiet unless PARALLELIC_TEST_LOG names a level.
 *
 * @module
 */
import { createLogger, type Logger, type LogLevel } from "../../core/log.ts";

/** A logger for tests: quiet unless PARALLELIC_TEST_LOG names a level. */
export function testLogger(): Logger {
  const level = Deno.env.get("PARALLELIC_TEST_LOG") as LogLevel | undefined;
  return level ? createLogger({ level }) : createLogger({ level: "error", write: () => {} });
}
