import assert from "node:assert/strict";
import type { NodeRecord } from "../core/schema.ts";
import { limitsCheck } from "./doctor.ts";

const node = (limits: NodeRecord["limits"]): NodeRecord => ({
  name: "n1",
  state: "ready",
  drain: false,
  version: "1",
  hostname: "h",
  joinedAt: 0,
  lastSeenAt: 0,
  usedSlots: 0,
  holding: 0,
  slots: 2,
  cpus: 2,
  memoryBytes: 0,
  gpus: 0,
  labels: {},
  limits,
});

Deno.test("doctor names a cgroup v2 mount without favordynmods, and its fix, only where it is so", () => {
  const base = { cpus: "sched_setaffinity", memory: "rss-watch", usage: "cgroup2" } as const;
  const slow = limitsCheck(node({ ...base, cgroupFavorDynmods: false }));
  assert.equal(slow.ok, true, "a slower start, not a failure");
  assert.match(slow.detail, /without favordynmods.*mount -o remount,favordynmods/);
  assert.doesNotMatch(limitsCheck(node({ ...base, cgroupFavorDynmods: true })).detail, /favordynmods/);
  assert.doesNotMatch(limitsCheck(node({ ...base, usage: "proc" })).detail, /favordynmods/);
});
