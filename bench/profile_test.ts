import assert from "node:assert/strict";
import { type CpuProfile, renderProfile, summarize } from "./profile.ts";
import { percentile } from "./_util.ts";

/** main → work → leaf, with samples: 2 in leaf, 1 in work, 1 in main. */
const profile: CpuProfile = {
  nodes: [
    { id: 1, callFrame: { functionName: "(root)", url: "", lineNumber: -1 }, children: [2] },
    { id: 2, callFrame: { functionName: "main", url: "file:///work/x/a.ts", lineNumber: 0 }, children: [3] },
    { id: 3, callFrame: { functionName: "work", url: "file:///work/x/a.ts", lineNumber: 9 }, children: [4] },
    { id: 4, callFrame: { functionName: "leaf", url: "file:///work/x/b.ts", lineNumber: 4 } },
  ],
  samples: [4, 4, 3, 2],
  timeDeltas: [0, 1000, 1000, 1000, 1000],
  startTime: 0,
  endTime: 4000,
};

Deno.test("summarize() sums self and inclusive time per function from a V8 CPU profile", () => {
  const { totalMs, functions } = summarize(profile);
  assert.equal(totalMs, 4);
  const byName = Object.fromEntries(functions.map((f) => [f.name, f]));
  assert.deepEqual(byName["leaf b.ts:5"], { name: "leaf b.ts:5", selfMs: 2, totalMs: 2 });
  assert.deepEqual(byName["work a.ts:10"], { name: "work a.ts:10", selfMs: 1, totalMs: 3 });
  assert.deepEqual(byName["main a.ts:1"], { name: "main a.ts:1", selfMs: 1, totalMs: 4 });
  assert.equal(functions[0].name, "leaf b.ts:5");
  assert.match(renderProfile(profile), /\| `leaf b.ts:5` \| 2 \| 50.0% \| 2 \|/);
});

Deno.test("percentile() takes the nearest rank", () => {
  const values = Array.from({ length: 100 }, (_, i) => 100 - i);
  assert.equal(percentile(values, 50), 50);
  assert.equal(percentile(values, 99), 99);
  assert.equal(percentile(values, 100), 100);
  assert.equal(percentile([7], 50), 7);
  assert.ok(Number.isNaN(percentile([], 50)));
});
