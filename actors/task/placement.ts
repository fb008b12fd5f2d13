/**
 * Where instances go: which nodes fit a task, how many instances a node may
 * hold ahead (prefetch), which task is served first (priority, then fair
 * share between owners), and the one place a node's used slots, memory and
 * GPUs change. Pure: it reads the state it is given and returns the
 * assignments; taking instances off a task is the caller's (see `lifecycle.ts`).
 *
 * @module
 */
import type { Assignment, NodeRecord, TaskRecord } from "../../core/schema.ts";
import type { Flight, Live, NodeSeat, Settings } from "./state.ts";

/** The settings placement reads. */
export type PrefetchSettings = Pick<Settings, "prefetchFactor" | "prefetchLeadMs" | "maxPrefetchFactor">;

/** What breaks ties between owners of equal priority. */
export interface FairShare {
  /** Instances an owner has running. */
  running(owner: string): number;
  /** An owner's recent usage, decayed. */
  usage(owner: string): number;
}

/** One instance attempt sent to a node. */
export type Item = Assignment["tasks"][number]["items"][number];

/** Takes up to `count` processes' worth of instances of a task for a node (and books them on its seat). */
export type Take = (live: Live, seat: NodeSeat, count: number) => Item[];

/** Does the node offer what the task asks, ignoring what is in use? */
export function nodeCanEverFit(node: NodeRecord, spec: TaskRecord["spec"]): boolean {
  return spec.cpus <= node.slots && spec.memoryBytes <= node.memoryBytes && spec.gpus <= node.gpus &&
    Object.entries(spec.labels).every(([k, v]) => node.labels[k] === v);
}

/** How many instances per slot a node may hold beyond those running: more when they are short. */
export const prefetchOf = (seat: NodeSeat, p: PrefetchSettings): number =>
  seat.avgRunMs === null ? p.prefetchFactor : Math.min(
    p.maxPrefetchFactor,
    Math.max(p.prefetchFactor, Math.ceil(p.prefetchLeadMs / Math.max(seat.avgRunMs, 0.1))),
  );

/** Free slots of a node, counting the prefetch allowance. */
export const freeSlots = (seat: NodeSeat, p: PrefetchSettings): number =>
  seat.rec.state === "ready" ? seat.rec.slots * (1 + prefetchOf(seat, p)) - seat.usedSlots : 0;

/**
 * How many more instances of the task may be sent now under `[limits] max_running`, counting those running and
 * those sent ahead to nodes (Infinity without a limit).
 */
export const throttleRoom = (live: Live): number => {
  const max = live.rec.spec.maxRunning ?? null;
  return max === null ? Infinity : Math.max(0, max - live.flights.size);
};

/** Does one more instance of the task fit on the node now? */
export const fitsNow = (seat: NodeSeat, live: Live, p: PrefetchSettings): boolean => {
  const spec = live.rec.spec;
  return throttleRoom(live) > 0 && nodeCanEverFit(seat.rec, spec) && freeSlots(seat, p) >= spec.cpus &&
    seat.usedMemory + spec.memoryBytes <= seat.rec.memoryBytes &&
    seat.usedGpus + spec.gpus <= seat.rec.gpus;
};

/**
 * How many instances from `from` one process of the task runs: up to `[task] chunk`, never across a value of a
 * matrix key but the last (so that only the last key varies within a chunk), nor more than `room`.
 */
export function chunkAt(spec: TaskRecord["spec"], from: number, room = Infinity): number {
  let end = Math.min(spec.instances, from + (spec.chunk ?? 1));
  const last = spec.matrix.at(-1);
  if (last) end = Math.min(end, (Math.floor(from / last.values.length) + 1) * last.values.length);
  return Math.max(1, Math.min(end - from, room));
}

/** Books a flight on its node's seat (a rider in another's process books nothing). */
export function occupySeat(seat: NodeSeat, flight: Flight): void {
  const spec = flight.live.rec.spec;
  seat.flights.add(flight);
  if (flight.rider) return;
  seat.usedSlots += spec.cpus;
  seat.usedMemory += spec.memoryBytes;
  seat.usedGpus += spec.gpus;
}

/** Frees what a flight held on its node's seat (nothing when the seat does not hold it). */
export function vacateSeat(seat: NodeSeat | undefined, flight: Flight): void {
  if (!seat?.flights.delete(flight) || flight.rider) return;
  const spec = flight.live.rec.spec;
  seat.usedSlots -= spec.cpus;
  seat.usedMemory -= spec.memoryBytes;
  seat.usedGpus -= spec.gpus;
}

/** Retries of a task whose backoff is over. */
export const readyRetries = (live: Live, now: number): number => {
  let n = 0;
  for (const r of live.retry) if ((r.notBefore ?? 0) <= now) n++;
  return n;
};

/** Has the task instances to place now? */
export const hasWork = (live: Live, now: number): boolean =>
  !live.rec.waitingOn?.length && (live.rec.nextIndex < live.rec.spec.instances || readyRetries(live, now) > 0);

/**
 * Highest priority first; then the owner with fewest running, then the one
 * with least recent usage (so short instances share fairly too); then the
 * oldest task.
 */
export const better = (a: Live, b: Live, share: FairShare): boolean => {
  if (a.rec.spec.priority !== b.rec.spec.priority) return a.rec.spec.priority > b.rec.spec.priority;
  if (a.rec.owner !== b.rec.owner) {
    const ra = share.running(a.rec.owner);
    const rb = share.running(b.rec.owner);
    if (ra !== rb) return ra < rb;
    const ua = share.usage(a.rec.owner);
    const ub = share.usage(b.rec.owner);
    if (ua !== ub) return ua < ub;
  }
  return a.rec.id < b.rec.id;
};

/**
 * Fills the nodes with free slots, least used first, from the best task that fits each; returns one assignment per
 * node. `take` takes the instances off the task and books them on the seat.
 */
export function plan(
  tasks: Iterable<Live>,
  nodes: Iterable<NodeSeat>,
  now: number,
  p: PrefetchSettings,
  share: FairShare,
  take: Take,
): Map<string, Assignment> {
  const outgoing = new Map<string, Assignment>();
  const candidates = [...tasks].filter((t) => hasWork(t, now));
  if (candidates.length === 0) return outgoing;
  const seats = [...nodes].filter((s) => freeSlots(s, p) > 0)
    .sort((a, b) => a.usedSlots / a.rec.slots - b.usedSlots / b.rec.slots);
  for (const seat of seats) {
    for (;;) {
      let best: Live | undefined;
      for (const t of candidates) {
        if (hasWork(t, now) && fitsNow(seat, t, p) && (!best || better(t, best, share))) best = t;
      }
      if (!best) break;
      // Take a fair share: at most one node's worth of slots per pick, so other
      // owners' tasks of equal priority interleave.
      const room = Math.min(Math.floor(freeSlots(seat, p) / best.rec.spec.cpus), seat.rec.slots, throttleRoom(best));
      const items = take(best, seat, Math.max(1, room));
      if (items.length === 0) break;
      let msg = outgoing.get(seat.rec.name);
      if (!msg) outgoing.set(seat.rec.name, msg = { tasks: [] });
      let entry = msg.tasks.find((e) => e.taskId === best.rec.id);
      if (!entry) {
        msg.tasks.push(entry = { taskId: best.rec.id, digest: best.rec.digest, run: best.run, items: [] });
      }
      entry.items.push(...items);
    }
  }
  return outgoing;
}
