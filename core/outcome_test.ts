import assert from "node:assert/strict";
import { entrypointProblem, formatDurationMs, howItEnded } from "./outcome.ts";

const enc = (s: string) => new TextEncoder().encode(s);
const attempt = { attempt: 0, node: "n", assignedAt: 0, startedAt: 0, endedAt: 1 };

Deno.test("durations read as task.toml writes them", () => {
  assert.equal(formatDurationMs(300_000), "5m");
  assert.equal(formatDurationMs(5_400_000), "1h30m");
  assert.equal(formatDurationMs(90_061_000), "1d1h1m1s");
  assert.equal(formatDurationMs(1500), "1500ms");
});

Deno.test("an attempt the node stopped says why, not which signal it used", () => {
  assert.equal(
    howItEnded({ ...attempt, exitCode: null, signal: "SIGTERM", error: "timed out after 5m" }),
    "timed out after 5m",
  );
  assert.equal(howItEnded({ ...attempt, exitCode: null, signal: "SIGKILL", error: null }), "killed by SIGKILL");
  assert.equal(howItEnded({ ...attempt, exitCode: 3, signal: null, error: null }), "exit code 3");
  assert.equal(howItEnded(undefined), "no result");
});

Deno.test("an entrypoint without a '#!' line or with CRLF line ends is named with its fix", () => {
  assert.equal(entrypointProblem("run.sh", enc("#!/bin/sh\necho\n")), null);
  assert.equal(entrypointProblem("bin/x", enc("\x7fELF\x02\x01")), null);
  assert.match(
    entrypointProblem("run.sh", enc("#!/bin/sh\r\necho\r\n"))!,
    /Windows \(CRLF\) line ends.*dos2unix run\.sh/,
  );
  assert.match(entrypointProblem("run.sh", enc("echo hi\n"))!, /no '#!' line.*'#!\/bin\/sh'/);
});
