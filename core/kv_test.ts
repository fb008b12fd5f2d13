import assert from "node:assert/strict";
import { recordingAtomics, tempKv } from "../tests/kit/mod.ts";
import {
  type BatchedWrite,
  countTasks,
  MAX_BYTES_PER_ATOMIC,
  MAX_MUTATIONS_PER_ATOMIC,
  TASK_COUNTS_READY,
  taskCountChange,
  taskCountKey,
  writeBatched,
} from "./kv.ts";

/** `n` instance records, to fill an atomic up to where a test wants it. */
const fillers = (n: number): BatchedWrite[] =>
  Array.from({ length: n }, (_, i) => ({ key: ["instance", "t", i], value: { i } }));

Deno.test("writeBatched() splits at the atomic's limit, and never between an entry bound to the next and that one", async () => {
  await using temp = await tempKv();
  const { kv } = temp;
  const atomics: string[][] = [];
  // One slot is left in the first atomic: the audit entry must not take it without its task.
  const entries: BatchedWrite[] = [
    ...fillers(MAX_MUTATIONS_PER_ATOMIC - 1),
    { key: ["audit", 1, "a"], value: { action: "task.submit" }, withNext: true },
    { key: ["task", "t"], value: { id: "t" } },
  ];
  assert.equal(await writeBatched(recordingAtomics(kv, atomics), entries), 2);
  const committed = atomics.filter((a) => a.length > 0);
  assert.equal(committed[0].length, MAX_MUTATIONS_PER_ATOMIC - 1);
  assert.deepEqual(committed[1], ["audit/1/a", "task/t"]);
  assert.deepEqual((await kv.get(["task", "t"])).value, { id: "t" });
  assert.deepEqual((await kv.get(["instance", "t", 0])).value, { i: 0 });
  // Without the binding, the first atomic is filled to its limit.
  atomics.length = 0;
  await writeBatched(recordingAtomics(kv, atomics), entries.map(({ key, value }) => ({ key, value })));
  assert.equal(atomics.filter((a) => a.length > 0)[0].length, MAX_MUTATIONS_PER_ATOMIC);
});

Deno.test("writeBatched() splits at the atomic's byte cap, wherever the big values are", async () => {
  await using temp = await tempKv();
  const { kv } = temp;
  const atomics: string[][] = [];
  // 60 KiB a value: 8 fit the byte cap (beside a few small ones), a 9th does not.
  const big = (i: number): BatchedWrite => ({ key: ["big", i], value: "x".repeat(60 * 1024) });
  const perAtomic = Math.floor(MAX_BYTES_PER_ATOMIC / (60 * 1024 + 66));
  assert.equal(perAtomic, 8);
  await writeBatched(recordingAtomics(kv, atomics), [...fillers(3), ...Array.from({ length: 10 }, (_, i) => big(i))]);
  assert.deepEqual(atomics.filter((a) => a.length > 0).map((a) => a.length), [3 + perAtomic, 10 - perAtomic]);
  // A commit of a few entries is one atomic.
  atomics.length = 0;
  assert.equal(await writeBatched(recordingAtomics(kv, atomics), [...fillers(2), big(20), big(21)]), 1);
  assert.equal((await kv.get<string>(["big", 21])).value?.length, 60 * 1024);
});

Deno.test("writeBatched() keeps a chain of bound entries (audit entry, submit key, task) in one atomic", async () => {
  await using temp = await tempKv();
  const { kv } = temp;
  const atomics: string[][] = [];
  // Two slots are left: the three bound entries go to the next atomic together.
  await writeBatched(recordingAtomics(kv, atomics), [
    ...fillers(MAX_MUTATIONS_PER_ATOMIC - 2),
    { key: ["audit", 1, "a"], value: { action: "task.submit" }, withNext: true },
    { key: ["submit-key", "alice", "k"], value: { taskId: "t" }, withNext: true },
    { key: ["task", "t"], value: { id: "t" } },
  ]);
  const committed = atomics.filter((a) => a.length > 0);
  assert.equal(committed[0].length, MAX_MUTATIONS_PER_ATOMIC - 2);
  assert.deepEqual(committed[1], ["audit/1/a", "submit-key/alice/k", "task/t"]);
});

Deno.test("writeBatched() adds to counters, and says after each atomic how many entries are stored", async () => {
  await using temp = await tempKv();
  const { kv } = temp;
  const stored: number[] = [];
  const entries: BatchedWrite[] = [
    ...fillers(MAX_MUTATIONS_PER_ATOMIC - 1),
    ...taskCountChange("ann", null, "queued"),
    { key: ["task", "a"], value: { id: "a" } },
    ...taskCountChange("ann", "queued", "running"),
    ...taskCountChange("ann", null, "queued"),
    { key: ["task", "b"], value: { id: "b" } },
  ];
  assert.equal(await writeBatched(kv, entries, (n) => stored.push(n)), 2);
  assert.deepEqual(stored, [MAX_MUTATIONS_PER_ATOMIC - 1, entries.length], "the counter moves with its task");
  assert.equal((await kv.get<Deno.KvU64>(taskCountKey("queued", "ann"))).value?.value, 1n);
  assert.equal((await kv.get<Deno.KvU64>(taskCountKey("running", "ann"))).value?.value, 1n);
  await kv.set(TASK_COUNTS_READY, true);
  assert.equal(await countTasks(kv, {}), 2);
  assert.equal(await countTasks(kv, { state: "queued" }), 1);
  assert.equal(await countTasks(kv, { owner: "bob" }), 0);
  await writeBatched(kv, taskCountChange("ann", "queued", null));
  assert.equal(await countTasks(kv, { state: "queued", owner: "ann" }), 0, "a decrement wraps back to 0");
});
