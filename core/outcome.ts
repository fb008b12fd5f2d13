/**
 * Failures in words a user can act on: how an attempt ended ("timed out
 * after 5m", not "killed by SIGTERM"), durations as task.toml writes them,
 * and what is wrong with an entrypoint the system could not start.
 *
 * @module
 */
import type { Attempt } from "./schema.ts";

/**
 * Failed attempts of a task's instances on one node after which that node takes no more of the task. Here, apart
 * from the schema, so that the CLI says so without loading it.
 */
export const AVOID_AFTER_FAILURES = 3;

/** `5m`, `1h30m`, `90s`, `250ms`: a duration as task.toml's `timeout` takes it. */
export function formatDurationMs(ms: number): string {
  if (ms < 1000 || ms % 1000 !== 0) return `${ms}ms`;
  let s = ms / 1000;
  const parts: string[] = [];
  for (const [unit, size] of [["d", 86_400], ["h", 3600], ["m", 60], ["s", 1]] as const) {
    if (s >= size) parts.push(`${Math.floor(s / size)}${unit}`), s %= size;
  }
  return parts.join("");
}

/**
 * How an attempt ended, in a few words: the node's reason when it stopped it (a timeout, a memory limit, a cancel)
 * rather than the signal it used, else the signal or exit code.
 */
export const howItEnded = (h: Attempt | undefined): string =>
  h?.signal && h.error
    ? h.error
    : h?.signal
    ? `killed by ${h.signal}`
    : h?.exitCode != null
    ? `exit code ${h.exitCode}${h.error ? ` (${h.error})` : ""}`
    : (h?.error ?? "no result");

/**
 * Why an entrypoint whose first bytes are `head` cannot be started by the system, with the fix; null when its start
 * looks right (a `#!` line, or an ELF binary). A `#!/bin/sh` line that ends in CR names `/bin/sh\r`, which does not
 * exist; a script without `#!` is not run by `posix_spawn` at all.
 */
export function entrypointProblem(path: string, head: Uint8Array): string | null {
  const text = new TextDecoder().decode(head.subarray(0, 256));
  if (text.startsWith("\x7fELF")) return null;
  if (text.startsWith("#!")) {
    if (!text.split("\n")[0].includes("\r")) return null;
    // Short: it ends an attempt's error, which is kept to 160 characters.
    return `it has Windows (CRLF) line ends: save it with LF ends (dos2unix ${path})`;
  }
  return `it has no '#!' line: make '#!/bin/sh' (or '#!/usr/bin/env python3') its first line`;
}
