import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { createLogger } from "./log.ts";

Deno.test("createLogger() writes scoped JSON lines, and steps of every scope to one trace file", async () => {
  await using dir = await tempDir();
  const lines: string[] = [];
  const traceFile = join(dir.path, "steps.log");
  const log = createLogger({ format: "json", level: "info", write: (l) => void lines.push(l), traceFile });
  const task = log.scope({ actor: "task" });
  task.debug("hidden");
  task.info("task:done", { taskId: "t1" });
  log.step("a");
  task.step("b");
  task.scope({ taskId: "t1" }).step("c");
  assert.equal(lines.length, 1);
  assert.deepEqual(
    (({ level, event, actor, taskId }) => ({ level, event, actor, taskId }))(JSON.parse(lines[0])),
    { level: "info", event: "task:done", actor: "task", taskId: "t1" },
  );
  const steps = (await Deno.readTextFile(traceFile)).trim().split("\n").map((l) => l.split(" "));
  assert.deepEqual(steps.map((s) => s[2]), ["a", "b", "c"]);
  assert.ok(steps.every((s) => s[1] === String(Deno.pid) && Math.abs(Number(s[0]) - Date.now()) < 60_000));
  // Without a trace file a step does nothing.
  createLogger({ write: () => {} }).step("nothing");
});

Deno.test("a trace file that cannot be written turns tracing off with one message, never an error", () => {
  const said: string[] = [];
  const error = console.error;
  console.error = (m: string) => void said.push(m);
  try {
    const log = createLogger({ write: () => {}, traceFile: "/nonexistent-dir/steps.log" }).scope({ actor: "task" });
    log.step("a");
    log.step("b");
  } finally {
    console.error = error;
  }
  assert.equal(said.length, 1);
  assert.match(
    said[0],
    /^Cannot write trace steps to '\/nonexistent-dir\/steps.log' \(PARALLELIC_TRACE\) as .+: tracing is off$/,
  );
});
