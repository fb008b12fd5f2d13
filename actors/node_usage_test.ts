import assert from "node:assert/strict";
import { createUsageRing } from "./node_usage.ts";

Deno.test("the usage ring folds heartbeats into one sample per span and keeps only the last hour", () => {
  const ring = createUsageRing(30_000, 60 * 60_000);
  const t0 = 1_000_000 * 30_000;
  ring.add(t0 + 1000, { usedSlots: 1, cpuBusy: 0.2, memoryUsedBytes: 100 });
  ring.add(t0 + 2000, { usedSlots: 3, cpuBusy: 0.4, memoryUsedBytes: 50 });
  ring.add(t0 + 31_000, { usedSlots: 0 });
  assert.deepEqual(ring.since(t0 - 1), [
    { at: t0, cpuBusy: 0.30000000000000004, memoryUsedBytes: 100, usedSlots: 3 },
    { at: t0 + 30_000, cpuBusy: null, memoryUsedBytes: null, usedSlots: 0 },
  ]);
  // Two hours of heartbeats, one a second: 120 samples stay, the oldest overwritten.
  for (let ms = 0; ms < 2 * 3600_000; ms += 1000) ring.add(t0 + ms, { usedSlots: 1, cpuBusy: 0.5 });
  const all = ring.since(0);
  assert.equal(all.length, 120);
  assert.equal(all[0].at, t0 + 3600_000);
  assert.equal(ring.since(t0 + 2 * 3600_000 - 10 * 60_000).length, 20, "the last ten minutes");
});
