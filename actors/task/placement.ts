/**
 * Where instances go: which nodes fit a task, how many instances a node may
 * hold ahead (prefetch), which task is served first (priority, then fair
 * share between owners), and the one place a node's used slots, memory and
 * GPUs change. Pure: it reads the state it is given and returns the
 * assignments; taking instances off a task is the caller's (see `lifecycle.ts`).
 *
 * @module
 */
import {
  type Assignment,
  AVOID_AFTER_FAILURES,
  type InstanceRecord,
  type NodeRecord,
  type TaskRecord,
} from "../../core/schema.ts";
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

/** Bytes as GiB with one decimal. */
export const gib = (b: number): string => `${(b / 2 ** 30).toFixed(1)} GiB`;

/**
 * Why none of `nodes` could ever run the task, one reason per requirement no node meets (slots, memory, gpus,
 * labels), each naming what the nodes have; empty when each requirement is met by some node.
 */
export function whyNoNodeFits(spec: TaskRecord["spec"], nodes: readonly NodeRecord[]): string[] {
  const list = (fn: (n: NodeRecord) => string) => nodes.map((n) => `${n.name}: ${fn(n)}`).join(", ");
  const pairs = (labels: Record<string, string>) => Object.entries(labels).map(([k, v]) => `${k}=${v}`).join(",");
  const checks: Array<[boolean, () => string]> = [
    [
      nodes.some((n) => n.slots >= spec.cpus),
      () => `no node has slots >= ${spec.cpus} (nodes: ${list((n) => String(n.slots))})`,
    ],
    [
      nodes.some((n) => n.memoryBytes >= spec.memoryBytes),
      () => `no node has memory >= ${gib(spec.memoryBytes)} (nodes: ${list((n) => gib(n.memoryBytes))})`,
    ],
    [
      nodes.some((n) => n.gpus >= spec.gpus),
      () => `no node has gpus >= ${spec.gpus} (nodes: ${list((n) => String(n.gpus))})`,
    ],
    [
      nodes.some((n) => Object.entries(spec.labels).every(([k, v]) => n.labels[k] === v)),
      () => `no node has labels ${pairs(spec.labels)} (nodes: ${list((n) => pairs(n.labels) || "none")})`,
    ],
  ];
  return checks.filter(([ok]) => !ok).map(([, why]) => why());
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

/** Has the task instances to place now? A held task has none. */
export const hasWork = (live: Live, now: number): boolean =>
  !live.rec.held && !live.rec.waitingOn?.length &&
  (live.rec.nextIndex < live.rec.spec.instances || readyRetries(live, now) > 0);

/** How long a retry that is due waits for another node than the one its last attempt failed on. */
export const PREFER_OTHER_NODE_MS = 30_000;

/**
 * The nodes a task avoids: those on which {@linkcode AVOID_AFTER_FAILURES} of its attempts failed and none succeeded
 * since it was submitted or last rerun (where some succeed, the failures are the instances' own). Strictly, even when
 * no other node fits: then the task ends (see {@linkcode avoidedEverywhere}).
 */
export function avoidedNodes(task: TaskRecord): Set<string> {
  const failing = new Set<string>();
  for (const [node, n] of Object.entries(task.nodeFailures ?? {})) {
    if (n >= AVOID_AFTER_FAILURES && !task.nodeSuccesses?.[node]) failing.add(node);
  }
  return failing;
}

/**
 * The ready nodes that fit the task, when every one of them avoids it (else null): nothing of it can be placed
 * until a node that fits joins.
 */
export function avoidedEverywhere(task: TaskRecord, seats: Iterable<NodeSeat>): NodeSeat[] | null {
  const fits = [...seats].filter((n) => n.rec.state === "ready" && nodeCanEverFit(n.rec, task.spec));
  const avoided = avoidedNodes(task);
  return fits.length > 0 && fits.every((n) => avoided.has(n.rec.name)) ? fits : null;
}

/**
 * Should this retry wait for another node? Yes when its last attempt failed on `seat`, another ready node fits and
 * does not avoid the task (`elsewhere`), and it has been due for less than {@linkcode PREFER_OTHER_NODE_MS}.
 */
export function prefersAnotherNode(rec: InstanceRecord, seat: NodeSeat, now: number, elsewhere: boolean): boolean {
  const last = rec.history[rec.history.length - 1];
  if (!elsewhere || !last || last.node !== seat.rec.name) return false;
  const dueAt = rec.notBefore ?? last.endedAt ?? now;
  return now - dueAt < PREFER_OTHER_NODE_MS;
}

/** Is there a ready node other than `seat` that fits the task and does not avoid it? */
export function otherNodeFits(live: Live, seat: NodeSeat, seats: Iterable<NodeSeat>, avoided: Set<string>): boolean {
  for (const other of seats) {
    if (
      other !== seat && other.rec.state === "ready" && !avoided.has(other.rec.name) &&
      nodeCanEverFit(other.rec, live.rec.spec)
    ) return true;
  }
  return false;
}

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
  const all = [...nodes];
  const avoided = new Map(candidates.map((t) => [t, avoidedNodes(t.rec)]));
  const seats = all.filter((s) => freeSlots(s, p) > 0)
    .sort((a, b) => a.usedSlots / a.rec.slots - b.usedSlots / b.rec.slots);
  for (const seat of seats) {
    // Tasks that gave this seat nothing (their retries wait for another node): the next best is asked.
    const passed = new Set<Live>();
    for (;;) {
      let best: Live | undefined;
      for (const t of candidates) {
        if (
          !passed.has(t) && hasWork(t, now) && !avoided.get(t)!.has(seat.rec.name) && fitsNow(seat, t, p) &&
          (!best || better(t, best, share))
        ) best = t;
      }
      if (!best) break;
      // Take a fair share: at most one node's worth of slots per pick, so other
      // owners' tasks of equal priority interleave.
      const room = Math.min(Math.floor(freeSlots(seat, p) / best.rec.spec.cpus), seat.rec.slots, throttleRoom(best));
      const items = take(best, seat, Math.max(1, room));
      if (items.length === 0) {
        passed.add(best);
        continue;
      }
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
