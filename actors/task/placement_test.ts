import assert from "node:assert/strict";
import type { Assignment, NodeRecord } from "../../core/schema.ts";
import { parseTaskToml } from "../../core/task_toml.ts";
import {
  avoidedEverywhere,
  avoidedNodes,
  better,
  chunkAt,
  type FairShare,
  fitsNow,
  freeSlots,
  nodeCanEverFit,
  occupySeat,
  otherNodeFits,
  plan,
  PREFER_OTHER_NODE_MS,
  prefersAnotherNode,
  prefetchOf,
  type Take,
  throttleRoom,
  vacateSeat,
  whyNoNodeFits,
} from "./placement.ts";
import { type Flight, type Live, liveOf, newTaskRecord, type NodeSeat } from "./state.ts";
import { DIGEST, nodeRecord } from "./test_kit.ts";

const prefetch = { prefetchFactor: 1, prefetchLeadMs: 25, maxPrefetchFactor: 64 };
const noShare: FairShare = { running: () => 0, usage: () => 0 };

function task(id: string, toml: string, owner = "alice"): Live {
  const spec = parseTaskToml(`[task]\nentrypoint = "run.sh"\n${toml}`);
  return liveOf(newTaskRecord({ owner, digest: DIGEST, packageBytes: 1, spec }, id, 0));
}

function seat(name: string, slots: number, more: Partial<NodeRecord> = {}): NodeSeat {
  return {
    rec: nodeRecord(name, slots, more),
    usedSlots: 0,
    usedMemory: 0,
    usedGpus: 0,
    flights: new Set(),
    avgRunMs: null,
  };
}

/** Takes first attempts from the cursor and books them, as the actor does (without records or spans). */
const take: Take = (live, s, count) => {
  const items = [];
  while (items.length < count && live.rec.nextIndex < live.rec.spec.instances && fitsNow(s, live, prefetch)) {
    const index = live.rec.nextIndex++;
    const flight: Flight = {
      live,
      rec: { index, state: "running", attempt: 0, node: s.rec.name, notBefore: null, history: [] },
      node: s.rec.name,
      assignedAt: 0,
    };
    live.flights.set(index, flight);
    occupySeat(s, flight);
    items.push({ index, attempt: 0 });
  }
  return items;
};

const indexes = (a: Assignment | undefined) => a?.tasks.flatMap((t) => t.items.map((i) => `${t.taskId}:${i.index}`));

Deno.test("a node fits a task when it offers its cpus, memory, gpus and labels", () => {
  const spec =
    task("t", `[resources]\ncpus = 2\ngpus = 1\nmemory = "512MiB"\n[placement.labels]\nzone = "a"\n`).rec.spec;
  const node = seat("n", 4, { gpus: 1, labels: { zone: "a" } }).rec;
  assert.equal(nodeCanEverFit(node, spec), true);
  assert.equal(nodeCanEverFit({ ...node, labels: { zone: "b" } }, spec), false);
  assert.equal(nodeCanEverFit({ ...node, gpus: 0 }, spec), false);
  assert.equal(nodeCanEverFit({ ...node, slots: 1 }, spec), false);
  assert.equal(nodeCanEverFit({ ...node, memoryBytes: 1 }, spec), false);
});

Deno.test("prefetch grows for short instances, up to its cap, and a node not ready has no free slots", () => {
  const s = seat("n", 2);
  assert.equal(prefetchOf(s, prefetch), 1);
  assert.equal(freeSlots(s, prefetch), 4);
  s.avgRunMs = 0.5;
  assert.equal(prefetchOf(s, prefetch), 50);
  s.avgRunMs = 0.01;
  assert.equal(prefetchOf(s, prefetch), 64);
  s.avgRunMs = 1000;
  assert.equal(prefetchOf(s, prefetch), 1);
  assert.equal(freeSlots({ ...s, rec: { ...s.rec, state: "draining" } }, prefetch), 0);
});

Deno.test("a seat is booked and freed by the flights it holds, once", () => {
  const s = seat("n", 4);
  const live = task("t", `[resources]\ncpus = 2\n`);
  const flight: Flight = {
    live,
    rec: { index: 0, state: "running", attempt: 0, node: "n", notBefore: null, history: [] },
    node: "n",
    assignedAt: 0,
  };
  occupySeat(s, flight);
  assert.deepEqual([s.usedSlots, s.usedMemory, s.flights.size], [2, live.rec.spec.memoryBytes, 1]);
  vacateSeat(s, flight);
  vacateSeat(s, flight);
  vacateSeat(undefined, flight);
  assert.deepEqual([s.usedSlots, s.usedMemory, s.flights.size], [0, 0, 0]);
});

Deno.test("placement fills the least used node first, with the slots plus prefetch each holds", () => {
  const a = seat("a", 2);
  const b = seat("b", 2);
  occupySeat(a, {
    live: task("x", ""),
    rec: { index: 0, state: "running", attempt: 0, node: "a", notBefore: null, history: [] },
    node: "a",
    assignedAt: 0,
  });
  const t = task("t", `instances = 100\n`);
  const out = plan([t], [a, b], 0, prefetch, noShare, take);
  assert.deepEqual(indexes(out.get("b")), ["t:0", "t:1", "t:2", "t:3"]);
  assert.deepEqual(indexes(out.get("a")), ["t:4", "t:5", "t:6"]);
  assert.equal(t.rec.nextIndex, 7);
  assert.equal(plan([t], [a, b], 0, prefetch, noShare, take).size, 0, "the nodes are full");
});

Deno.test("higher priority goes first; equal priority interleaves owners a node's slots at a time", () => {
  const low = task("t1", `instances = 10\n[limits]\npriority = 10\n`, "alice");
  const high = task("t2", `instances = 10\n[limits]\npriority = 90\n`, "bob");
  const out = plan([low, high], [seat("n", 2)], 0, prefetch, noShare, take);
  assert.deepEqual(indexes(out.get("n")), ["t2:0", "t2:1", "t2:2", "t2:3"]);

  const running = new Map<string, number>();
  const share: FairShare = { running: (o) => running.get(o) ?? 0, usage: () => 0 };
  const fair: Take = (live, s, count) => {
    const items = take(live, s, count);
    running.set(live.rec.owner, (running.get(live.rec.owner) ?? 0) + items.length);
    return items;
  };
  const alice = task("t1", `instances = 10\n`, "alice");
  const bob = task("t2", `instances = 10\n`, "bob");
  const shared = plan([alice, bob], [seat("n", 2)], 0, prefetch, share, fair);
  assert.deepEqual(indexes(shared.get("n")), ["t1:0", "t1:1", "t2:0", "t2:1"]);
});

Deno.test("between owners with as many running, less recent usage wins, then the older task", () => {
  const a = task("t1", "", "alice");
  const b = task("t2", "", "bob");
  assert.equal(better(a, b, { running: () => 0, usage: (o) => (o === "alice" ? 5 : 1) }), false);
  assert.equal(better(a, b, { running: (o) => (o === "alice" ? 0 : 3), usage: () => 9 }), true);
  assert.equal(better(a, b, noShare), true);
  assert.equal(better(b, a, noShare), false);
});

Deno.test("max_running caps a task's instances in flight across every node, counting those sent ahead", () => {
  const a = seat("a", 4);
  const b = seat("b", 4);
  const t = task("t", `instances = 100\n[limits]\nmax_running = 3\n`);
  const other = task("u", `instances = 100\n`);
  assert.equal(throttleRoom(t), 3);
  const out = plan([t, other], [a, b], 0, prefetch, noShare, take);
  const sent = [...out.values()].flatMap((m) => m.tasks.filter((e) => e.taskId === "t").flatMap((e) => e.items));
  assert.equal(sent.length, 3, "three of t in flight, over both nodes");
  assert.equal(t.flights.size, 3);
  assert.equal(throttleRoom(t), 0);
  assert.equal(fitsNow(seat("c", 4), t, prefetch), false, "an empty node takes no more of t");
  assert.ok(other.flights.size > 0, "the free slots went to the unthrottled task");
  // One ends: exactly one more may go.
  const [index, flight] = [...t.flights][0];
  t.flights.delete(index);
  vacateSeat(flight.node === "a" ? a : b, flight);
  const c = seat("c", 8);
  const next = plan([t], [c], 0, prefetch, noShare, take);
  assert.equal(next.get("c")?.tasks[0].items.length, 1);
  assert.equal(t.flights.size, 3);
  assert.equal(throttleRoom(task("v", "")), Infinity);
});

Deno.test("a chunk runs up to [task] chunk instances, within one value of every matrix key but the last", () => {
  const plain = task("t", `instances = 25\nchunk = 10\n`).rec.spec;
  assert.deepEqual([chunkAt(plain, 0), chunkAt(plain, 10), chunkAt(plain, 20), chunkAt(plain, 3)], [10, 10, 5, 10]);
  assert.equal(chunkAt(plain, 0, 4), 4, "no more than max_running leaves room for");
  const grid = task("g", `chunk = 4\n[task.matrix]\nscene = ["a", "b"]\nframe = { from = 1, to = 6 }\n`).rec.spec;
  // Instances 0-5 are scene a, frames 1-6; 6-11 scene b.
  assert.deepEqual([chunkAt(grid, 0), chunkAt(grid, 4), chunkAt(grid, 6), chunkAt(grid, 10)], [4, 2, 4, 2]);
  assert.equal(chunkAt(task("u", `instances = 3\n`).rec.spec, 0), 1);
});

Deno.test("a rider in another instance's process books nothing on its seat", () => {
  const s = seat("n", 4);
  const live = task("t", `instances = 2\nchunk = 2\n`);
  const rec = (index: number) => ({
    index,
    state: "running" as const,
    attempt: 0,
    node: "n",
    notBefore: null,
    history: [],
  });
  const head: Flight = { live, rec: rec(0), node: "n", assignedAt: 0 };
  const rider: Flight = { live, rec: rec(1), node: "n", assignedAt: 0, rider: true };
  occupySeat(s, head);
  occupySeat(s, rider);
  assert.deepEqual([s.usedSlots, s.flights.size], [1, 2]);
  vacateSeat(s, rider);
  vacateSeat(s, head);
  assert.deepEqual([s.usedSlots, s.flights.size], [0, 0]);
});

Deno.test("a held task gets nothing placed and lets others have the nodes; released, it is placed again", () => {
  const held = task("t1", `instances = 4\n[limits]\npriority = 90\n`);
  const other = task("t2", "instances = 4\n");
  held.rec.held = true;
  const n = seat("n", 2);
  const first = plan([held, other], [n], 0, prefetch, noShare, take);
  assert.ok(indexes(first.get("n"))?.every((i) => i.startsWith("t2:")), "only the other task's instances");
  assert.equal(held.rec.nextIndex, 0);
  held.rec.held = false;
  const m = seat("m", 2);
  const second = plan([held, other], [m], 0, prefetch, noShare, take);
  assert.ok(indexes(second.get("m"))?.every((i) => i.startsWith("t1:")), "released, its priority wins again");
});

Deno.test("a node that failed 3 attempts of a task and ran none takes no more of it, even when no other node can", () => {
  const t = task("t1", "instances = 8\n");
  const [a, b] = [seat("a", 2), seat("b", 2)];
  t.rec.nodeFailures = { a: 2 };
  assert.deepEqual([...avoidedNodes(t.rec)], [], "2 failures: still welcome");
  t.rec.nodeFailures = { a: 3, b: 1 };
  assert.deepEqual([...avoidedNodes(t.rec)], ["a"]);
  assert.equal(avoidedEverywhere(t.rec, [a, b]), null, "b can take it");
  const out = plan([t], [a, b], 0, prefetch, noShare, take);
  assert.equal(out.get("a"), undefined, "a gets nothing of it");
  assert.equal(indexes(out.get("b"))?.length, 4);
  t.rec.nodeSuccesses = { a: 1 };
  assert.deepEqual([...avoidedNodes(t.rec)], [], "where some succeeded, the failures are the instances' own");
  t.rec.nodeSuccesses = {};
  // Every node that fits failed it: nothing goes back to them; the task ends (lifecycle.ts).
  t.rec.nodeFailures = { a: 3, b: 3 };
  assert.deepEqual([...avoidedNodes(t.rec)], ["a", "b"]);
  assert.deepEqual(avoidedEverywhere(t.rec, [a, b])?.map((n) => n.rec.name), ["a", "b"]);
  assert.equal(plan([t], [seat("a", 2), seat("b", 2)], 0, prefetch, noShare, take).size, 0, "nothing placed");
  const c = seat("c", 2);
  assert.equal(avoidedEverywhere(t.rec, [a, b, c]), null, "a new node can take it");
  assert.equal(avoidedEverywhere(t.rec, [a, seat("b", 2, { state: "draining" })])?.length, 1);
  assert.equal(indexes(plan([t], [seat("a", 2), c], 0, prefetch, noShare, take).get("c"))?.length, 4);
});

Deno.test("a retry prefers another node than the one it failed on, for a while, when one fits", () => {
  const t = task("t1", "instances = 2\n");
  const [a, b] = [seat("a", 2), seat("b", 2)];
  const rec = {
    index: 0,
    state: "queued" as const,
    attempt: 1,
    node: null,
    notBefore: 1000,
    history: [{
      attempt: 0,
      node: "a",
      assignedAt: 0,
      startedAt: 0,
      endedAt: 900,
      exitCode: 1,
      signal: null,
      error: null,
    }],
  };
  assert.equal(otherNodeFits(t, a, [a, b], new Set()), true);
  assert.equal(otherNodeFits(t, a, [a, b], new Set(["b"])), false, "b avoids the task");
  assert.equal(otherNodeFits(t, a, [a, seat("b", 2, { labels: {}, gpus: 0, state: "lost" })], new Set()), false);
  assert.equal(prefersAnotherNode(rec, a, 1000, true), true, "not on the node it failed on");
  assert.equal(prefersAnotherNode(rec, b, 1000, true), false);
  assert.equal(prefersAnotherNode(rec, a, 1000, false), false, "when no other node can, on the same one");
  assert.equal(prefersAnotherNode(rec, a, 1000 + PREFER_OTHER_NODE_MS, true), false, "not for ever");
});

Deno.test("why no node fits names each requirement no node meets, with what the nodes have", () => {
  const spec = task("t", `[resources]\ncpus = 8\ngpus = 1\n[placement.labels]\nzone = "b"\n`).rec.spec;
  const nodes = [seat("a", 4, { labels: { zone: "a" } }).rec, seat("c", 2).rec];
  assert.deepEqual(whyNoNodeFits(spec, nodes), [
    "no node has slots >= 8 (nodes: a: 4, c: 2)",
    "no node has gpus >= 1 (nodes: a: 0, c: 0)",
    "no node has labels zone=b (nodes: a: zone=a, c: none)",
  ]);
  assert.deepEqual(whyNoNodeFits(task("u", "").rec.spec, nodes), []);
});
