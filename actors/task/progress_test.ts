import assert from "node:assert/strict";
import { createBus } from "../../core/bus.ts";
import { systemClock } from "../../core/clock.ts";
import { type State, type TaskProgress, taskProgress, type TaskRecord } from "../../core/schema.ts";
import { startTestNats, testLogger, waitUntil } from "../../tests/kit/mod.ts";
import { createProgress } from "./progress.ts";
import type { TaskState } from "./state.ts";

const TASK = "t00progressorder1";

/** The fields of a task record its progress event is made of. */
const record = (state: State, succeeded: number): TaskRecord =>
  ({
    id: TASK,
    name: "order",
    owner: "alice",
    state,
    counts: { queued: 0, running: 2 - succeeded, succeeded, failed: 0, cancelled: 0 },
    spec: { instances: 2 },
    createdAt: 1,
    startedAt: 2,
    endedAt: state === "succeeded" ? 3 : null,
    reason: null,
  }) as unknown as TaskRecord;

Deno.test("a task's events go out in the order noted, the last right behind one still queued", async () => {
  await using nats = await startTestNats();
  const bus = createBus(nats.nc, testLogger());
  const seen: State[] = [];
  bus.subscribe(taskProgress(TASK), (e: TaskProgress) => void seen.push(e.state));
  await nats.nc.flush();
  const stop = new AbortController();
  const progress = createProgress(
    {
      bus,
      clock: systemClock,
      log: testLogger(),
      signal: stop.signal,
      settings: { progressMs: 250 },
    } as unknown as TaskState,
  );
  // One commit's progress (queued behind its assignments), then the task's end in the same turn.
  progress.note(record("running", 1), []);
  progress.note(record("succeeded", 2), []);
  await waitUntil(() => seen.length === 2);
  assert.deepEqual(seen, ["running", "succeeded"]);
  progress.stop();
  stop.abort();
});
