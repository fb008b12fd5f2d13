import assert from "node:assert/strict";
import { stepTable, stepTimes } from "./latency.ts";

Deno.test("trace steps: p50 after each run's submit, a repeated step numbered, nothing after the end", () => {
  // Two runs, lines of several processes out of order as they are appended.
  const text = [
    "1000.000 1 client.submit",
    "1001.000 2 task.commit",
    "1003.000 2 task.commit",
    "1002.000 2 task.committed",
    "1005.000 1 client.event",
    "1006.000 2 task.late",
    "2000.000 1 client.submit",
    "2003.000 2 task.commit",
    "2005.000 2 task.committed",
    "2007.000 2 task.commit",
    "2009.000 1 client.event",
  ].join("\n");
  assert.deepEqual(stepTimes(text, "client.event"), [
    { step: "client.submit", p50: 0 },
    { step: "task.commit", p50: 1 },
    { step: "task.committed", p50: 2 },
    { step: "task.commit #2", p50: 3 },
    { step: "client.event", p50: 5 },
  ]);
  assert.match(stepTable(text, "client.event"), /\| task\.commit #2 \| 3\.000 \| 1\.000 \|/);
});
