/**
 * The task actor: owns every task and instance. It accepts submissions,
 * places instances on nodes in batches, records results in batches, retries,
 * requeues what lost nodes held, and cancels.
 *
 * Design for 10,000-instance tasks:
 * - a queued instance costs nothing: a task keeps a cursor (`nextIndex`) and
 *   a short retry queue, so a million queued instances are one record;
 * - a first attempt is stored as part of a span (instances `from` to `to - 1`
 *   sent to one node in one cycle: one write); an instance record is written
 *   when it ends (or is requeued, or a retry is dispatched); all writes of a
 *   cycle are coalesced into few Deno KV atomics;
 * - assignments go out as one message per node per cycle, results come in
 *   batches and are acknowledged once stored;
 * - per-state counts live in the task record: status reads never scan.
 *
 * `[finalize]` runs as one extra instance, numbered `instances`, queued once
 * every instance succeeded; it is not in the counts (the task record's
 * `finalize` holds its state) and the task stays `running` until it ends.
 *
 * Exactly-once recording: an assignment is stored before it is sent; a
 * result is accepted only for the attempt and node the manager assigned
 * (fencing by attempt number), and acknowledged only once stored, so a node
 * resends until it is.
 *
 * @module
 */
import { type Bus, unwrap } from "../../core/bus.ts";
import { type Clock, nextTurn, type TimerId } from "../../core/clock.ts";
import { serialize } from "node:v8";
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import { newTaskId } from "../../core/ids.ts";
import type { Logger } from "../../core/log.ts";
import { DURATION_BUCKETS, Metrics } from "../../core/metrics.ts";
import {
  type Assignment,
  type AssignSpan,
  type Attempt,
  type Counts,
  type DataUseRecord,
  FINAL_STATES,
  type Heartbeat,
  type InstanceRecord,
  type Kill,
  MAX_PROGRESS_CHANGES,
  nodeAssign,
  nodeHeartbeatAll,
  nodeKill,
  type NodeRecord,
  nodesEvent,
  nodesList,
  type Result,
  type RunSpec,
  type State,
  type SubmitKeyRecord,
  type SubmitReply,
  type SubmitRequest,
  taskCancel,
  taskDone,
  taskExplain,
  type TaskProgress,
  taskProgress,
  type TaskRecord,
  taskResultsAll,
  taskSubmit,
} from "../../core/schema.ts";
import type { AuditLog } from "../../core/audit.ts";
import {
  type BatchedWrite,
  dataUseKey,
  instanceKey,
  instancesOf,
  spanInstance,
  spanKey,
  spansOf,
  SUBMIT_KEY_TTL_MS,
  submitKeyKey,
  taskKey,
  TASKS,
  writeBatched,
} from "../keys.ts";

/**
 * Largest task record accepted, V8-serialized as Deno KV stores it (a value holds 64 KiB; the record grows a little as
 * it runs: counts, times, a reason).
 */
const MAX_TASK_RECORD_BYTES = 56 * 1024;

/**
 * Longest error text kept per attempt. An instance's record holds every attempt (up to 100 retries and a few requeues
 * of lost nodes) and must fit a Deno KV value (64 KiB) whatever the nodes report; a longer text is cut, ending in "…".
 */
export const MAX_ATTEMPT_ERROR_CHARS = 160;

/** An attempt's error text, cut to {@linkcode MAX_ATTEMPT_ERROR_CHARS}. */
export const clipError = (text: string | null): string | null =>
  text === null || text.length <= MAX_ATTEMPT_ERROR_CHARS ? text : `${text.slice(0, MAX_ATTEMPT_ERROR_CHARS - 1)}…`;

/** A submit's answer when it succeeds. */
type SubmitAnswer = Extract<SubmitReply, { ok: true }>;

/** What the task actor needs. */
export interface TaskActorDeps {
  bus: Bus;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
  /** Where counters go. @default {a private registry} */
  metrics?: Metrics;
  /** The audit log: a submit that names its address is audited in the same commit as its task. */
  audit?: Pick<AuditLog, "mutation">;
}

/** Options of {@linkcode createTaskActor}. */
export interface TaskActorOptions {
  /** Stops the actor. */
  signal: AbortSignal;
  /**
   * How many instances beyond its slots a node may hold, at least, as a
   * multiple of its slots, so that it never waits for the next batch. For
   * short instances it grows (see `prefetchLeadMs`). @default {1}
   */
  prefetchFactor?: number;
  /**
   * A node is given enough instances to stay busy for about this long while
   * the next batch travels: with 0.5 ms instances that is 40 per slot. @default {25}
   */
  prefetchLeadMs?: number;
  /** Most instances per slot a node may hold. @default {64} */
  maxPrefetchFactor?: number;
  /** Half-life of an owner's recent usage, which breaks ties between owners of equal priority. @default {300000} */
  usageHalfLifeMs?: number;
  /** First retry delay; it doubles per failed attempt, up to 60 s. @default {1000} */
  retryBackoffMs?: number;
  /** A dispatched instance that a node's heartbeat does not list after this long is requeued. @default {5000} */
  orphanGraceMs?: number;
  /** Most times an instance is requeued because its node was lost. @default {5} */
  maxLostRequeues?: number;
  /** Least time between two progress events of one task (the final one goes out at once). @default {250} */
  progressMs?: number;
  /**
   * Least time between two commits (group commit) while instances run: under
   * a stream of small result batches each commit then carries more, for a
   * quarter less manager CPU per instance in `bench/fanout.ts` (2 ms against
   * none), and another quarter less at 4 ms (with nodes holding 25 ms of work,
   * see `prefetchLeadMs`, the wait costs them nothing); the last result of a
   * burst, and an idle actor, commit at once. @default {4}
   */
  commitIntervalMs?: number;
}

/** A running task actor. */
export interface TaskActor {
  /** Resolves once state was loaded from Deno KV and subscriptions are live. */
  readonly ready: Promise<void>;
  /** Resolves when the actor has stopped and flushed its writes. */
  readonly stopped: Promise<void>;
  /** Counters for tests and metrics. */
  stats(): { commits: number; dispatched: number; results: number; ignored: number; liveTasks: number };
}

/** First attempts sent to one node in one cycle, stored as one {@linkcode AssignSpan}. */
interface Span {
  key: Deno.KvKey;
  value: AssignSpan;
  /** How many of its instances have no record of their own yet: at 0 the span is deleted. */
  open: number;
}

/** An instance dispatched to a node and not yet ended. */
interface Flight {
  live: Live;
  rec: InstanceRecord;
  node: string;
  assignedAt: number;
  /** The span that stands for its record while its first attempt runs. */
  span?: Span;
}

/** A task that is not final yet, in memory. */
interface Live {
  rec: TaskRecord;
  run: RunSpec;
  /** Instances waiting for another attempt (their records exist). */
  retry: InstanceRecord[];
  flights: Map<number, Flight>;
  /** The span fresh instances were last added to (extended while the same cycle sends more to that node). */
  lastSpan?: Span;
  /**
   * What lands in the same atomic as the task's first commit: its submit's audit entry, Idempotency-Key and data set
   * uses. Dropped once stored; kept through a failed commit.
   */
  bound?: BatchedWrite[];
}

/** A node as the scheduler sees it. */
interface NodeSeat {
  rec: NodeRecord;
  usedSlots: number;
  usedMemory: number;
  usedGpus: number;
  flights: Set<Flight>;
  /** Moving average of how long its instances run, ms (null until one ended). */
  avgRunMs: number | null;
}

/** An attempt that ended because its node was lost or forgot it: it does not use up a retry. */
const isLoss = (h: Attempt) =>
  // Records stored before `lost` existed said so by an error worded "node …".
  h.lost ?? (h.exitCode === null && h.signal === null && (h.error?.startsWith("node ") ?? false));

const emptyCounts = (): Counts => ({ queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });

/** Is this instance the task's `[finalize]` run (the extra instance numbered `instances`)? */
const isFinalize = (task: TaskRecord, index: number) => index === task.spec.instances;

/** How an attempt ended, in a few words. */
const howItEnded = (h: Attempt | undefined) =>
  h?.signal ? `killed by ${h.signal}` : h?.exitCode != null ? `exit code ${h.exitCode}` : (h?.error ?? "no result");

/** Does the node offer what the task asks, ignoring what is in use? */
export function nodeCanEverFit(node: NodeRecord, spec: TaskRecord["spec"]): boolean {
  return spec.cpus <= node.slots && spec.memoryBytes <= node.memoryBytes && spec.gpus <= node.gpus &&
    Object.entries(spec.labels).every(([k, v]) => node.labels[k] === v);
}

/** Creates the task actor. */
export function createTaskActor(deps: TaskActorDeps, options: TaskActorOptions): TaskActor {
  const { bus, kv, clock } = deps;
  const log = deps.log.scope({ actor: "task" });
  const prefetchFactor = options.prefetchFactor ?? 1;
  const prefetchLeadMs = options.prefetchLeadMs ?? 25;
  const maxPrefetchFactor = options.maxPrefetchFactor ?? 64;
  const retryBackoffMs = options.retryBackoffMs ?? 1000;
  const orphanGraceMs = options.orphanGraceMs ?? 5000;
  const maxLostRequeues = options.maxLostRequeues ?? 5;
  const progressMs = options.progressMs ?? 250;
  const commitIntervalMs = options.commitIntervalMs ?? 4;
  const { signal } = options;

  const tasks = new Map<string, Live>();
  const nodes = new Map<string, NodeSeat>();
  const runningByOwner = new Map<string, number>();
  /** Recently dispatched instances per owner, decaying with a half-life: the fair-share tie-breaker. */
  const usageByOwner = new Map<string, { value: number; at: number }>();
  const usageHalfLifeMs = options.usageHalfLifeMs ?? 300_000;
  const usageOf = (owner: string, now = clock.now()) => {
    const u = usageByOwner.get(owner);
    return u ? u.value * 2 ** (-(now - u.at) / usageHalfLifeMs) : 0;
  };
  const stats = { commits: 0, dispatched: 0, results: 0, ignored: 0 };
  const metrics = deps.metrics ?? new Metrics();
  const dispatchedTotal = metrics.counter("parallelic_instances_dispatched_total", "Instance attempts sent to nodes.");
  const endedTotal = metrics.counter(
    "parallelic_instance_attempts_ended_total",
    "Instance attempts that ended, by outcome (succeeded, failed, retried, requeued, cancelled).",
  );
  const duration = metrics.histogram(
    "parallelic_instance_duration_seconds",
    "How long instance attempts ran on their node.",
    DURATION_BUCKETS,
  );
  const tasksFinished = metrics.counter("parallelic_tasks_finished_total", "Tasks that ended, by final state.");
  metrics.gauge("parallelic_tasks", "Tasks not yet ended, by state.", (g) => {
    const by = { queued: 0, running: 0 };
    for (const t of tasks.values()) if (t.rec.state === "queued" || t.rec.state === "running") by[t.rec.state]++;
    for (const [state, n] of Object.entries(by)) g.set(n, { state });
  });
  metrics.gauge("parallelic_instances", "Instances of tasks not yet ended, by state.", (g) => {
    const by = { queued: 0, running: 0 };
    for (const t of tasks.values()) {
      by.queued += t.rec.counts.queued;
      by.running += t.rec.counts.running;
    }
    for (const [state, n] of Object.entries(by)) g.set(n, { state });
  });
  metrics.gauge("parallelic_kv_commits", "Deno KV atomic commits made by the task actor.", (g) => g.set(stats.commits));

  // Writes and actions waiting for the next commit.
  let dirtyInstances = new Map<string, { key: Deno.KvKey; rec: InstanceRecord }>();
  let dirtySpans = new Map<string, { key: Deno.KvKey; value: AssignSpan | null }>();
  /** First attempts sent this cycle (their spans stand for their records), for progress events. */
  let dirtyRuns = new Map<string, InstanceRecord[]>();
  let dirtyTasks = new Set<Live | TaskRecord>();
  let afterCommit: Array<() => void> = [];
  let cycling = false;
  let lastCommitAt = -Infinity;
  let again = false;
  let kicked = false;
  let retryTimer: TimerId | undefined;
  let retryTimerAt = Infinity;

  const markInstance = (live: Live, rec: InstanceRecord) => {
    dirtyInstances.set(`${live.rec.id}/${rec.index}`, { key: instanceKey(live.rec.id, rec.index), rec });
    dirtyTasks.add(live);
  };

  /** Writes a span (or deletes it, when all its instances have records of their own). */
  const markSpan = (span: Span) => {
    dirtySpans.set(`${span.key[1] as string}/${span.value.from}`, {
      key: span.key,
      value: span.open > 0 ? span.value : null,
    });
  };

  const ownerRunning = (owner: string, delta: number) => {
    runningByOwner.set(owner, (runningByOwner.get(owner) ?? 0) + delta);
  };

  /** Instances dispatched and not yet ended, over all tasks. */
  const running = () => {
    let n = 0;
    for (const t of tasks.values()) n += t.flights.size;
    return n;
  };

  /** Schedules one cycle (place, then commit) after the current macrotask. */
  const kick = () => {
    if (kicked || signal.aborted) return;
    kicked = true;
    nextTurn(() => {
      kicked = false;
      void cycle();
    });
  };

  async function cycle(): Promise<void> {
    if (cycling) {
      again = true;
      return;
    }
    cycling = true;
    try {
      do {
        // Group commit: while more results are on their way, let them gather for a moment after a
        // commit. The last result of a burst (nothing else running) is stored at once.
        const wait = lastCommitAt + commitIntervalMs - clock.now();
        if (wait > 0 && !signal.aborted && running() > 0) {
          await new Promise((r) => clock.setTimeout(() => r(undefined), wait));
        }
        again = false;
        if (!signal.aborted) place();
        await commit();
        lastCommitAt = clock.now();
      } while (again || dirtyInstances.size > 0 || dirtySpans.size > 0 || dirtyTasks.size > 0);
    } catch (e) {
      log.error("task:commit-failed", { error: String((e as Error)?.stack ?? e) });
      // Kept for the next commit (see commit()): try again shortly.
      if (!signal.aborted) clock.setTimeout(kick, 250);
    } finally {
      cycling = false;
    }
  }

  async function commit(): Promise<void> {
    if (
      dirtyInstances.size === 0 && dirtySpans.size === 0 && dirtyTasks.size === 0 && afterCommit.length === 0
    ) {
      return;
    }
    const instances = dirtyInstances;
    const spans = dirtySpans;
    const runs = dirtyRuns;
    const touched = dirtyTasks;
    const actions = afterCommit;
    dirtyInstances = new Map();
    dirtySpans = new Map();
    dirtyRuns = new Map();
    dirtyTasks = new Set();
    afterCommit = [];
    // In this order: instance records before the spans they replace, task records last.
    const entries: BatchedWrite[] = [];
    for (const e of instances.values()) entries.push({ key: e.key, value: e.rec });
    entries.push(...spans.values());
    for (const t of touched) {
      const [rec, bound] = "rec" in t ? [t.rec, t.bound] : [t, undefined];
      // A submitted task's audit entry, Idempotency-Key and data set uses land in the same atomic as the task.
      for (const e of bound ?? []) entries.push({ ...e, withNext: true });
      entries.push({ key: taskKey(rec.id), value: rec });
    }
    try {
      // writeBatched serializes every value before it awaits: no copies needed.
      log.step("task.commit");
      stats.commits += await writeBatched(kv, entries);
      log.step("task.committed");
    } catch (e) {
      // Nothing is dropped: what this commit carried waits for the next one (newer changes win), answers too.
      for (const [k, v] of instances) if (!dirtyInstances.has(k)) dirtyInstances.set(k, v);
      for (const [k, v] of spans) if (!dirtySpans.has(k)) dirtySpans.set(k, v);
      for (const [k, v] of runs) dirtyRuns.set(k, [...v, ...dirtyRuns.get(k) ?? []]);
      for (const t of touched) dirtyTasks.add(t);
      afterCommit.unshift(...actions);
      throw e;
    }
    for (const t of touched) if ("rec" in t) t.bound = undefined;
    const changes = runs;
    for (const { key, rec } of instances.values()) {
      const id = key[1] as string;
      changes.get(id)?.push(rec) ?? changes.set(id, [rec]);
    }
    // Assignments and done events first: they are on the way of an instance's start and a task's end.
    for (const action of actions) {
      try {
        action();
      } catch (e) {
        log.warn("task:after-commit-failed", { error: String(e) });
      }
    }
    for (const t of touched) {
      const rec = "rec" in t ? t.rec : t;
      noteProgress(rec, changes.get(rec.id) ?? []);
    }
  }

  // -------------------------------------------------------------------------
  // Progress events: after a commit, at most one per task per `progressMs`

  const progress = new Map<string, {
    lastAt: number;
    timer?: TimerId;
    event?: Omit<TaskProgress, "changed">;
    changed: Map<number, State> | null;
  }>();

  /** Notes what a commit stored for a task, and publishes it now or when the task's throttle allows. */
  function noteProgress(rec: TaskRecord, changes: InstanceRecord[]): void {
    if (signal.aborted) return;
    let p = progress.get(rec.id);
    if (!p) progress.set(rec.id, p = { lastAt: -Infinity, changed: new Map() });
    for (const inst of changes) {
      if (p.changed && p.changed.size >= MAX_PROGRESS_CHANGES && !p.changed.has(inst.index)) p.changed = null;
      p.changed?.set(inst.index, inst.state);
    }
    const { id: taskId, name, owner, state, createdAt, startedAt, endedAt, reason } = rec;
    p.event = {
      taskId,
      name,
      owner,
      state,
      counts: { ...rec.counts },
      instances: rec.spec.instances,
      createdAt,
      startedAt,
      endedAt,
      reason,
    };
    const waitMs = p.lastAt + progressMs - clock.now();
    if (FINAL_STATES.has(state) || waitMs <= 0) sendProgress(taskId);
    else p.timer ??= clock.setTimeout(() => sendProgress(taskId), waitMs);
  }

  function sendProgress(taskId: string): void {
    const p = progress.get(taskId);
    if (!p?.event) return;
    if (p.timer !== undefined) clock.clearTimeout(p.timer);
    const event: TaskProgress = { ...p.event, changed: p.changed ? [...p.changed] : null };
    if (FINAL_STATES.has(event.state)) progress.delete(taskId);
    else Object.assign(p, { lastAt: clock.now(), timer: undefined, event: undefined, changed: new Map() });
    try {
      bus.publish(taskProgress(taskId), event);
    } catch (e) {
      log.warn("task:progress-not-sent", { taskId, error: String(e) });
    }
  }

  // -------------------------------------------------------------------------
  // Placement

  const readyRetries = (live: Live, now: number) => {
    let n = 0;
    for (const r of live.retry) if ((r.notBefore ?? 0) <= now) n++;
    return n;
  };

  const hasWork = (live: Live, now: number) =>
    live.rec.nextIndex < live.rec.spec.instances || readyRetries(live, now) > 0;

  /** How many instances per slot a node may hold beyond those running: more when they are short. */
  const prefetchOf = (seat: NodeSeat) =>
    seat.avgRunMs === null
      ? prefetchFactor
      : Math.min(maxPrefetchFactor, Math.max(prefetchFactor, Math.ceil(prefetchLeadMs / Math.max(seat.avgRunMs, 0.1))));

  /** Free slots of a node, counting the prefetch allowance. */
  const freeSlots = (seat: NodeSeat) =>
    seat.rec.state === "ready" ? seat.rec.slots * (1 + prefetchOf(seat)) - seat.usedSlots : 0;

  const fitsNow = (seat: NodeSeat, live: Live) => {
    const spec = live.rec.spec;
    return nodeCanEverFit(seat.rec, spec) && freeSlots(seat) >= spec.cpus &&
      seat.usedMemory + spec.memoryBytes <= seat.rec.memoryBytes &&
      seat.usedGpus + spec.gpus <= seat.rec.gpus;
  };

  /**
   * Highest priority first; then the owner with fewest running, then the one
   * with least recent usage (so short instances share fairly too); then the
   * oldest task.
   */
  const better = (a: Live, b: Live) => {
    if (a.rec.spec.priority !== b.rec.spec.priority) return a.rec.spec.priority > b.rec.spec.priority;
    if (a.rec.owner !== b.rec.owner) {
      const ra = runningByOwner.get(a.rec.owner) ?? 0;
      const rb = runningByOwner.get(b.rec.owner) ?? 0;
      if (ra !== rb) return ra < rb;
      const ua = usageOf(a.rec.owner);
      const ub = usageOf(b.rec.owner);
      if (ua !== ub) return ua < ub;
    }
    return a.rec.id < b.rec.id;
  };

  function place(): void {
    const now = clock.now();
    const candidates = [...tasks.values()].filter((t) => hasWork(t, now));
    if (candidates.length === 0) {
      armRetryTimer();
      return;
    }
    const seats = [...nodes.values()].filter((s) => freeSlots(s) > 0)
      .sort((a, b) => a.usedSlots / a.rec.slots - b.usedSlots / b.rec.slots);
    const outgoing = new Map<string, Assignment>();
    for (const seat of seats) {
      for (;;) {
        let best: Live | undefined;
        for (const t of candidates) {
          if (hasWork(t, now) && fitsNow(seat, t) && (!best || better(t, best))) best = t;
        }
        if (!best) break;
        // Take a fair share: at most one node's worth of slots per pick, so other
        // owners' tasks of equal priority interleave.
        const room = Math.min(Math.floor(freeSlots(seat) / best.rec.spec.cpus), seat.rec.slots);
        const items = takeInstances(best, seat, Math.max(1, room), now);
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
    for (const [name, msg] of outgoing) {
      afterCommit.push(() => {
        log.step("task.assign");
        bus.publish(nodeAssign(name), msg);
      });
    }
    armRetryTimer();
  }

  function takeInstances(live: Live, seat: NodeSeat, count: number, now: number) {
    const spec = live.rec.spec;
    const items: Array<{ index: number; attempt: number }> = [];
    const assign = (rec: InstanceRecord, span?: Span) => {
      rec.state = "running";
      rec.node = seat.rec.name;
      rec.notBefore = null;
      rec.history.push({
        attempt: rec.attempt,
        node: seat.rec.name,
        assignedAt: now,
        startedAt: null,
        endedAt: null,
        exitCode: null,
        signal: null,
        error: null,
      });
      const flight: Flight = { live, rec, node: seat.rec.name, assignedAt: now, span };
      live.flights.set(rec.index, flight);
      seat.flights.add(flight);
      seat.usedSlots += spec.cpus;
      seat.usedMemory += spec.memoryBytes;
      seat.usedGpus += spec.gpus;
      if (isFinalize(live.rec, rec.index)) live.rec.finalize = "running";
      else {
        live.rec.counts.queued--;
        live.rec.counts.running++;
      }
      if (span) {
        span.open++;
        dirtyRuns.get(live.rec.id)?.push(rec) ?? dirtyRuns.set(live.rec.id, [rec]);
      } else markInstance(live, rec);
      items.push({ index: rec.index, attempt: rec.attempt });
    };
    for (let i = 0; i < live.retry.length && items.length < count;) {
      const rec = live.retry[i];
      if ((rec.notBefore ?? 0) <= now && fitsNow(seat, live)) {
        live.retry.splice(i, 1);
        assign(rec);
      } else i++;
    }
    // First attempts, from the cursor: one span per node and cycle stands for their records.
    let span: Span | undefined;
    while (items.length < count && live.rec.nextIndex < spec.instances && fitsNow(seat, live)) {
      if (!span) {
        const from = live.rec.nextIndex;
        const last = live.lastSpan;
        span = last && last.value.to === from && last.value.node === seat.rec.name && last.value.assignedAt === now
          ? last
          : {
            key: spanKey(live.rec.id, from),
            value: { from, to: from, node: seat.rec.name, assignedAt: now },
            open: 0,
          };
        live.lastSpan = span;
      }
      span.value.to = live.rec.nextIndex + 1;
      assign(
        { index: live.rec.nextIndex++, state: "queued", attempt: 0, node: null, notBefore: null, history: [] },
        span,
      );
    }
    if (span) markSpan(span);
    if (items.length > 0) {
      dirtyTasks.add(live);
      ownerRunning(live.rec.owner, items.length);
      usageByOwner.set(live.rec.owner, { value: usageOf(live.rec.owner, now) + items.length, at: now });
      if (live.rec.state === "queued") {
        live.rec.state = "running";
        live.rec.startedAt = now;
      }
      stats.dispatched += items.length;
      dispatchedTotal.inc({}, items.length);
    }
    return items;
  }

  /** Wakes the actor when the earliest retry falls due. */
  function armRetryTimer(): void {
    let earliest = Infinity;
    for (const t of tasks.values()) {
      for (const r of t.retry) earliest = Math.min(earliest, r.notBefore ?? 0);
    }
    if (earliest === Infinity || earliest >= retryTimerAt) return;
    if (retryTimer !== undefined) clock.clearTimeout(retryTimer);
    retryTimerAt = earliest;
    retryTimer = clock.setTimeout(() => {
      retryTimer = undefined;
      retryTimerAt = Infinity;
      kick();
    }, Math.max(0, earliest - clock.now()));
  }

  // -------------------------------------------------------------------------
  // Ending attempts

  /** Removes a flight from its node and task; returns its history entry. */
  function land(flight: Flight) {
    const { live, rec, span } = flight;
    const spec = live.rec.spec;
    live.flights.delete(rec.index);
    // Every caller writes the instance's own record next: the span no longer stands for it.
    if (span && --span.open === 0) markSpan(span);
    const seat = nodes.get(flight.node);
    if (seat?.flights.delete(flight)) {
      seat.usedSlots -= spec.cpus;
      seat.usedMemory -= spec.memoryBytes;
      seat.usedGpus -= spec.gpus;
    }
    if (!isFinalize(live.rec, rec.index)) live.rec.counts.running--;
    ownerRunning(live.rec.owner, -1);
    return rec.history[rec.history.length - 1];
  }

  function requeue(live: Live, rec: InstanceRecord, delayMs: number) {
    rec.state = "queued";
    rec.attempt++;
    rec.node = null;
    rec.notBefore = delayMs > 0 ? clock.now() + delayMs : null;
    live.retry.push(rec);
    if (isFinalize(live.rec, rec.index)) live.rec.finalize = "queued";
    else live.rec.counts.queued++;
    markInstance(live, rec);
  }

  function end(live: Live, rec: InstanceRecord, state: State) {
    rec.state = state;
    markInstance(live, rec);
    if (isFinalize(live.rec, rec.index)) {
      live.rec.finalize = state;
      const why = state === "succeeded"
        ? null
        : `finalize ${state}: ${howItEnded(rec.history[rec.history.length - 1])}`;
      return finishTask(live, state, why);
    }
    live.rec.counts[state as "succeeded" | "failed" | "cancelled"]++;
    maybeFinish(live);
  }

  /** Queues the `[finalize]` run: the extra instance numbered `instances`. */
  function startFinalize(live: Live) {
    const rec: InstanceRecord = {
      index: live.rec.spec.instances,
      state: "queued",
      attempt: 0,
      node: null,
      notBefore: null,
      history: [],
    };
    live.retry.push(rec);
    live.rec.finalize = "queued";
    markInstance(live, rec);
    log.info("task:finalize-queued", { taskId: live.rec.id });
    kick();
  }

  function maybeFinish(live: Live) {
    const c = live.rec.counts;
    if (c.queued > 0 || c.running > 0 || live.rec.nextIndex < live.rec.spec.instances) return;
    if (live.rec.finalize === "queued" || live.rec.finalize === "running") return;
    const state: State = c.failed > 0 ? "failed" : c.cancelled > 0 ? "cancelled" : "succeeded";
    if (state === "succeeded" && live.rec.spec.finalize && !live.rec.finalize) return startFinalize(live);
    finishTask(live, state, state === "failed" ? `${c.failed} of ${live.rec.spec.instances} instances failed` : null);
  }

  function finishTask(live: Live, state: State, reason: string | null) {
    tasksFinished.inc({ state });
    live.rec.state = state;
    live.rec.endedAt = clock.now();
    live.rec.reason = reason;
    tasks.delete(live.rec.id);
    dirtyTasks.add(live);
    const done = { taskId: live.rec.id, state, counts: { ...live.rec.counts } };
    afterCommit.push(() => {
      log.step("task.done");
      bus.publish(taskDone(live.rec.id), done);
    });
    log.info("task:done", { taskId: live.rec.id, state, counts: live.rec.counts });
  }

  /** Records one result; returns false when it is stale (fenced) and ignored. */
  function accept(node: string, r: Result): boolean {
    const live = tasks.get(r.taskId);
    const flight = live?.flights.get(r.index);
    if (!live || !flight || flight.rec.attempt !== r.attempt || flight.node !== node) return false;
    const entry = land(flight);
    const seat = nodes.get(node);
    if (r.startedAt !== null) duration.observe((r.endedAt - r.startedAt) / 1000);
    if (seat && r.startedAt !== null) {
      const ms = r.endedAt - r.startedAt;
      seat.avgRunMs = seat.avgRunMs === null ? ms : seat.avgRunMs * 0.9 + ms * 0.1;
    }
    entry.startedAt = r.startedAt;
    entry.endedAt = r.endedAt;
    entry.exitCode = r.exitCode;
    entry.signal = r.signal;
    entry.error = clipError(r.error);
    // Said by the node when it knows; an older node leaves it out (then the error's wording decides, see isLoss).
    if (r.lost !== undefined) entry.lost = r.lost;
    const rec = flight.rec;
    // Each attempt's outputs replace the instance's earlier ones in the workspace.
    const before = rec.history.findLast((h) => h !== entry && h.outputBytes !== undefined)?.outputBytes ?? 0;
    entry.outputBytes = r.outputBytes;
    live.rec.outputBytes = (live.rec.outputBytes ?? 0) + r.outputBytes - before;
    live.rec.logBytes = (live.rec.logBytes ?? 0) + r.logBytes;
    if (r.exitCode === 0 && r.error === null) {
      endedTotal.inc({ outcome: "succeeded" });
      end(live, rec, "succeeded");
    } else if (isLoss(entry)) {
      // The node could not run it (NATS unreachable, package fetch failed): not the instance's
      // fault, so no retry is used up, but a node that keeps failing it cannot loop forever.
      const lost = rec.history.filter(isLoss).length;
      endedTotal.inc({ outcome: lost > maxLostRequeues ? "failed" : "requeued" });
      if (lost > maxLostRequeues) end(live, rec, "failed");
      else requeue(live, rec, Math.min(60_000, retryBackoffMs * 2 ** (lost - 1)));
    } else {
      const failures = rec.history.filter((h) => !isLoss(h)).length;
      if (failures <= live.rec.spec.retries) {
        endedTotal.inc({ outcome: "retried" });
        requeue(live, rec, Math.min(60_000, retryBackoffMs * 2 ** (failures - 1)));
      } else {
        endedTotal.inc({ outcome: "failed" });
        end(live, rec, "failed");
      }
    }
    return true;
  }

  /** Sends instances held by a node that is gone (or forgot them) back to the queue. */
  function requeueFlight(flight: Flight, why: string) {
    const entry = land(flight);
    entry.error = clipError(why);
    entry.lost = true;
    entry.endedAt = clock.now();
    endedTotal.inc({ outcome: "requeued" });
    const lost = flight.rec.history.filter(isLoss).length;
    if (lost > maxLostRequeues) end(flight.live, flight.rec, "failed");
    else requeue(flight.live, flight.rec, 0);
  }

  // -------------------------------------------------------------------------
  // Messages

  /** Creates a task; answers once it is stored. */
  async function create(req: SubmitRequest): Promise<SubmitAnswer> {
    const now = clock.now();
    const rec: TaskRecord = {
      id: newTaskId(now),
      name: req.spec.name,
      owner: req.owner,
      digest: req.digest,
      packageBytes: req.packageBytes,
      spec: req.spec,
      state: "queued",
      counts: { ...emptyCounts(), queued: req.spec.instances },
      nextIndex: 0,
      createdAt: now,
      startedAt: null,
      endedAt: null,
      reason: null,
      finalize: null,
      outputBytes: 0,
      logBytes: 0,
    };
    // A Deno KV value holds at most 64 KiB: a record over it would fail every commit it is in.
    const recordBytes = serialize(rec).byteLength;
    if (recordBytes > MAX_TASK_RECORD_BYTES) {
      throw new ValidationError(
        `Cannot accept task '${rec.name}' as its record would be ${recordBytes} bytes, more than the limit of ` +
          `${MAX_TASK_RECORD_BYTES}: make task.toml's [env], [matrix] or args smaller`,
        { code: "task_too_large" },
      );
    }
    // Stored by the next cycle's commit, together with its first placements: one Deno KV write
    // less before the first instance starts. The answer waits for that commit (which also
    // sends the task's first progress event).
    const live = liveOf(rec);
    tasks.set(rec.id, live);
    dirtyTasks.add(live);
    const bound: BatchedWrite[] = [];
    if (deps.audit && req.address !== undefined) {
      bound.push(deps.audit.mutation({
        action: "task.submit",
        user: req.owner,
        address: req.address,
        target: rec.id,
        detail: `${rec.name}, ${rec.spec.instances} instances, ${rec.digest.slice(0, 19)}…`,
      }));
    }
    // The data set versions it was pinned to (see DataActor.submitWith): in use from the moment the task exists.
    for (const [key, { name, version }] of Object.entries(req.spec.data ?? {})) {
      if (version) {
        bound.push({ key: dataUseKey(version, rec.id), value: { taskId: rec.id, name, key } satisfies DataUseRecord });
      }
    }
    if (req.key !== undefined) {
      const value: SubmitKeyRecord = { taskId: rec.id, atMs: now, digest: rec.digest, name: rec.name };
      bound.push({ key: submitKeyKey(req.owner, req.key), value, expireIn: SUBMIT_KEY_TTL_MS });
    }
    if (bound.length) live.bound = bound;
    const stored = new Promise<void>((resolve) => afterCommit.push(resolve));
    kick();
    await stored;
    log.info("task:submitted", { taskId: rec.id, name: rec.name, instances: rec.spec.instances, owner: rec.owner });
    // The state it was accepted in: its first instances may be running already.
    return { ok: true as const, id: rec.id, state: "queued" as const, instances: rec.spec.instances };
  }

  /** Submits in flight by owner and Idempotency-Key: a repeat meanwhile waits for the first. */
  const submitting = new Map<string, { digest: string; name: string; answer: Promise<SubmitAnswer> }>();

  /** Refuses a key used for another package or name (as the IETF Idempotency-Key draft and Stripe do). */
  const sameSubmit = (req: SubmitRequest, earlier: { digest: string; name: string }, taskId?: string) => {
    if (earlier.digest === req.digest && earlier.name === req.spec.name) return;
    throw new ConflictError(
      `Cannot submit with Idempotency-Key '${req.key}' as it was used within the last day for another package or ` +
        `name${taskId ? ` (task ${taskId})` : ""}: use a new key for a new submit`,
      { code: "idempotency_key_reused" },
    );
  };

  bus.serve(taskSubmit, (req) => {
    log.step("task.submit");
    if (req.key === undefined) return create(req);
    const key = req.key;
    const k = `${req.owner}\u0000${key}`;
    const earlier = submitting.get(k);
    if (earlier) {
      sameSubmit(req, earlier);
      return earlier.answer.then((a) => ({ ...a, replayed: true }));
    }
    const answer = (async (): Promise<SubmitAnswer> => {
      const known = (await kv.get<SubmitKeyRecord>(submitKeyKey(req.owner, key))).value;
      if (known && clock.now() - known.atMs < SUBMIT_KEY_TTL_MS) {
        const rec = tasks.get(known.taskId)?.rec ?? (await kv.get<TaskRecord>(taskKey(known.taskId))).value;
        // A task deleted since is not answered: the submit makes a new one.
        if (rec) {
          sameSubmit(req, known, rec.id);
          return { ok: true as const, id: rec.id, state: rec.state, instances: rec.spec.instances, replayed: true };
        }
      }
      return await create(req);
    })();
    submitting.set(k, { digest: req.digest, name: req.spec.name, answer });
    // Once stored, Deno KV answers repeats; after a failure the next repeat tries afresh.
    const done = () => void submitting.delete(k);
    answer.then(done, done);
    return answer;
  }, { signal });

  bus.serve(taskExplain, async (req) => {
    const live = tasks.get(req.taskId);
    if (!live) {
      const stored = (await kv.get<TaskRecord>(taskKey(req.taskId))).value;
      if (!stored) throw new NotFoundError(`Task '${req.taskId}' does not exist`, { code: "task_not_found" });
      return {
        ok: true as const,
        state: stored.state,
        explanation: `The task ended ${stored.state}${stored.reason ? `: ${stored.reason}` : "."}`,
      };
    }
    if (req.index !== undefined) {
      const flight = live.flights.get(req.index);
      if (flight) {
        return {
          ok: true as const,
          state: "running" as const,
          explanation: `Instance ${req.index} runs on node ${flight.node} (attempt ${flight.rec.attempt}).`,
        };
      }
      const retry = live.retry.find((r) => r.index === req.index);
      if (retry?.notBefore && retry.notBefore > clock.now()) {
        return {
          ok: true as const,
          state: "queued" as const,
          explanation: `Instance ${req.index} waits to retry (attempt ${retry.attempt}) until ${
            new Date(retry.notBefore).toISOString()
          }, backing off after a failure.`,
        };
      }
      if (!retry && req.index < live.rec.nextIndex) {
        const rec = (await kv.get<InstanceRecord>(instanceKey(live.rec.id, req.index))).value;
        if (rec) {
          return { ok: true as const, state: rec.state, explanation: `Instance ${req.index} ended ${rec.state}.` };
        }
      }
    }
    return { ok: true as const, state: live.rec.state, explanation: explainQueue(live) };
  }, { signal });

  /** Says, in words, why a task's queued instances are not placed. */
  function explainQueue(live: Live): string {
    const spec = live.rec.spec;
    const queued = live.rec.counts.queued;
    if (queued === 0) return `All ${live.rec.counts.running} unfinished instances are running.`;
    const all = [...nodes.values()];
    if (all.length === 0) return "No node has joined: start one with 'deno task node --nats=nats://HOST:4222'.";
    const ready = all.filter((s) => s.rec.state === "ready");
    const list = (fn: (s: NodeSeat) => string, seats = ready) => seats.map((s) => `${s.rec.name}: ${fn(s)}`).join(", ");
    if (ready.length === 0) return `No node is ready (nodes: ${list((s) => s.rec.state, all)}).`;
    const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
    const checks: Array<[boolean, string]> = [
      [
        ready.some((s) => s.rec.slots >= spec.cpus),
        `no node has slots >= ${spec.cpus} (nodes: ${list((s) => String(s.rec.slots))})`,
      ],
      [
        ready.some((s) => s.rec.memoryBytes >= spec.memoryBytes),
        `no node has memory >= ${gib(spec.memoryBytes)} (nodes: ${list((s) => gib(s.rec.memoryBytes))})`,
      ],
      [
        ready.some((s) => s.rec.gpus >= spec.gpus),
        `no node has gpus >= ${spec.gpus} (nodes: ${list((s) => String(s.rec.gpus))})`,
      ],
      [
        ready.some((s) => Object.entries(spec.labels).every(([k, v]) => s.rec.labels[k] === v)),
        `no node has labels ${Object.entries(spec.labels).map(([k, v]) => `${k}=${v}`).join(",")} (nodes: ${
          list((s) => Object.entries(s.rec.labels).map(([k, v]) => `${k}=${v}`).join(",") || "none")
        })`,
      ],
    ];
    const failed = checks.filter(([ok]) => !ok).map(([, why]) => why);
    if (failed.length > 0) return `${queued} instances cannot be placed: ${failed.join("; ")}.`;
    const fitting = ready.filter((s) => nodeCanEverFit(s.rec, spec));
    if (fitting.length === 0) {
      return `${queued} instances cannot be placed: no single node meets every requirement (cpus ${spec.cpus}, memory ${
        gib(spec.memoryBytes)
      }, gpus ${spec.gpus}, labels ${JSON.stringify(spec.labels)}).`;
    }
    const ahead = [...tasks.values()].filter((t) => t !== live && t.rec.counts.queued > 0 && !better(live, t))
      .reduce((n, t) => n + t.rec.counts.queued, 0);
    const waiting = live.retry.filter((r) => (r.notBefore ?? 0) > clock.now()).length;
    return `${queued} instances wait for free slots on the ${fitting.length} nodes that fit (${
      list((s) => `${s.usedSlots}/${s.rec.slots * (1 + prefetchOf(s))} held`, fitting)
    })${ahead ? `; ${ahead} instances of tasks with higher or equal priority are ahead` : ""}${
      waiting ? `; ${waiting} wait for a retry backoff` : ""
    }.`;
  }

  bus.serve(taskCancel, async (req) => {
    const live = tasks.get(req.taskId);
    if (!live) {
      const stored = await kv.get<TaskRecord>(taskKey(req.taskId));
      if (!stored.value) {
        throw new NotFoundError(`Cannot cancel task '${req.taskId}' as it does not exist`, { code: "task_not_found" });
      }
      return { ok: true as const, state: stored.value.state };
    }
    const now = clock.now();
    const kills = new Map<string, Kill["items"]>();
    for (const flight of [...live.flights.values()]) {
      const entry = land(flight);
      entry.error = `cancelled by ${req.by}`;
      entry.endedAt = now;
      flight.rec.state = "cancelled";
      markInstance(live, flight.rec);
      if (!kills.has(flight.node)) kills.set(flight.node, [{ taskId: live.rec.id }]);
    }
    for (const rec of live.retry) {
      rec.state = "cancelled";
      markInstance(live, rec);
    }
    live.retry = [];
    if (live.rec.finalize === "queued" || live.rec.finalize === "running") live.rec.finalize = "cancelled";
    const c = live.rec.counts;
    c.cancelled = live.rec.spec.instances - c.succeeded - c.failed;
    c.queued = 0;
    c.running = 0;
    finishTask(live, "cancelled", `cancelled by ${req.by}`);
    for (const [node, items] of kills) {
      afterCommit.push(() => bus.publish(nodeKill(node), { items, reason: `task cancelled by ${req.by}` }));
    }
    const result = new Promise<void>((resolve) => afterCommit.push(resolve));
    kick();
    await result;
    return { ok: true as const, state: "cancelled" as const };
  }, { signal });

  bus.serve(taskResultsAll, async (batch) => {
    log.step("task.results");
    let accepted = 0;
    let ignored = 0;
    for (const r of batch.results) {
      if (accept(batch.node, r)) accepted++;
      else ignored++;
    }
    stats.results += accepted;
    stats.ignored += ignored;
    if (ignored > 0) log.debug("task:results-ignored", { node: batch.node, ignored });
    const stored = new Promise<void>((resolve) => afterCommit.push(resolve));
    kick();
    await stored;
    return { ok: true as const, accepted, ignored };
  }, { signal });

  const upsertNode = (rec: NodeRecord) => {
    const seat = nodes.get(rec.name);
    if (seat) seat.rec = rec;
    else nodes.set(rec.name, { rec, usedSlots: 0, usedMemory: 0, usedGpus: 0, flights: new Set(), avgRunMs: null });
    kick();
  };

  bus.subscribe(nodesEvent, (event) => {
    upsertNode(event.node);
    if (event.kind === "lost" || event.kind === "left") {
      const seat = nodes.get(event.node.name)!;
      const flights = [...seat.flights];
      const why = event.kind === "lost" ? "lost (no heartbeat for its lease)" : "left (stopped before it finished)";
      for (const f of flights) requeueFlight(f, `node ${event.node.name} ${why}`);
      if (flights.length) log.warn("task:node-lost-requeued", { node: event.node.name, instances: flights.length });
      kick();
    }
  }, { signal });

  bus.subscribe(nodeHeartbeatAll, (hb: Heartbeat) => reconcile(hb), { signal });

  /**
   * Compares what a node says it holds with what the manager dispatched to it:
   * requeues what it should hold but does not (a lost assignment message),
   * and kills what it holds but should not (a stale attempt).
   */
  function reconcile(hb: Heartbeat) {
    const seat = nodes.get(hb.name);
    if (!seat) return;
    const now = clock.now();
    const held = new Set(hb.holding.map((h) => `${h.taskId}/${h.index}/${h.attempt}`));
    let orphans = 0;
    for (const f of [...seat.flights]) {
      if (!held.has(`${f.live.rec.id}/${f.rec.index}/${f.rec.attempt}`) && now - f.assignedAt > orphanGraceMs) {
        requeueFlight(f, `node ${hb.name} no longer held it`);
        orphans++;
      }
    }
    const stale: Kill["items"] = [];
    for (const h of hb.holding) {
      const f = tasks.get(h.taskId)?.flights.get(h.index);
      if (!f || f.rec.attempt !== h.attempt || f.node !== hb.name) stale.push(h);
    }
    if (stale.length) bus.publish(nodeKill(hb.name), { items: stale, reason: "stale attempt" });
    if (orphans) {
      log.warn("task:orphans-requeued", { node: hb.name, instances: orphans });
      kick();
    }
  }

  function liveOf(rec: TaskRecord): Live {
    const { entrypoint, workdir, args, instances, matrix, env, cpus, timeoutMs } = rec.spec;
    const { data = {}, outputs = [], finalize = null } = rec.spec;
    return {
      rec,
      run: { entrypoint, workdir, args, instances, matrix, env, cpus, timeoutMs, data, outputs, finalize },
      retry: [],
      flights: new Map(),
    };
  }

  /** Rebuilds memory from Deno KV after a (re)start. */
  async function load(): Promise<void> {
    for await (const entry of kv.list<TaskRecord>({ prefix: TASKS })) {
      const rec = entry.value;
      if (FINAL_STATES.has(rec.state)) continue;
      const live = liveOf(rec);
      const counts = emptyCounts();
      let maxIndex = -1;
      const seen = new Set<number>();
      for await (const ie of kv.list<InstanceRecord>({ prefix: instancesOf(rec.id) })) {
        const inst = ie.value;
        if (isFinalize(rec, inst.index)) {
          // The finalize run is not counted; its own record says where it is.
          rec.finalize = inst.state;
        } else {
          seen.add(inst.index);
          maxIndex = Math.max(maxIndex, inst.index);
          counts[inst.state]++;
        }
        if (inst.state === "queued") live.retry.push(inst);
        if (inst.state === "running") {
          const last = inst.history[inst.history.length - 1];
          const flight: Flight = { live, rec: inst, node: inst.node ?? "", assignedAt: last?.assignedAt ?? 0 };
          live.flights.set(inst.index, flight);
        }
      }
      // First attempts that ran under a span when the manager stopped, and have no record of their own.
      for await (const se of kv.list<AssignSpan>({ prefix: spansOf(rec.id) })) {
        const span: Span = { key: se.key, value: se.value, open: 0 };
        for (let i = span.value.from; i < span.value.to; i++) {
          if (seen.has(i)) continue;
          seen.add(i);
          maxIndex = Math.max(maxIndex, i);
          counts.running++;
          span.open++;
          live.flights.set(i, {
            live,
            rec: spanInstance(span.value, i),
            node: span.value.node,
            assignedAt: span.value.assignedAt,
            span,
          });
        }
        if (span.open === 0) markSpan(span);
      }
      const next = Math.max(rec.nextIndex, maxIndex + 1);
      for (let i = rec.nextIndex; i < next; i++) {
        if (!seen.has(i)) {
          live.retry.push({ index: i, state: "queued", attempt: 0, node: null, notBefore: null, history: [] });
          counts.queued++;
        }
      }
      rec.nextIndex = next;
      counts.queued += rec.spec.instances - next;
      rec.counts = counts;
      tasks.set(rec.id, live);
      ownerRunning(rec.owner, live.flights.size);
      dirtyTasks.add(live);
    }
  }

  const ready = (async () => {
    await load();
    const reply = unwrap(
      await bus.request(nodesList, {}, { timeoutMs: 5000 }).catch(() => ({ ok: true as const, nodes: [] })),
    );
    for (const rec of reply.nodes) upsertNode(rec);
    for (const live of tasks.values()) {
      for (const f of live.flights.values()) {
        const seat = nodes.get(f.node);
        if (seat && seat.rec.state !== "lost" && seat.rec.state !== "left") {
          seat.flights.add(f);
          seat.usedSlots += live.rec.spec.cpus;
          seat.usedMemory += live.rec.spec.memoryBytes;
          seat.usedGpus += live.rec.spec.gpus;
          // A restarted manager gives nodes a grace period to report what they hold.
          f.assignedAt = clock.now();
        } else {
          requeueFlight(f, `node ${f.node || "?"} unknown after manager restart`);
        }
      }
      maybeFinish(live);
    }
    log.info("task:ready", { liveTasks: tasks.size, nodes: nodes.size });
    kick();
  })();

  const stopped = new Promise<void>((resolve) => {
    const stop = async () => {
      if (retryTimer !== undefined) clock.clearTimeout(retryTimer);
      for (const p of progress.values()) if (p.timer !== undefined) clock.clearTimeout(p.timer);
      await ready.catch(() => {});
      while (cycling) await new Promise((r) => setTimeout(r, 5));
      await commit().catch((e) => log.error("task:final-commit-failed", { error: String(e) }));
      resolve();
    };
    if (signal.aborted) void stop();
    else signal.addEventListener("abort", () => void stop(), { once: true });
  });

  return {
    ready,
    stopped,
    stats: () => ({ ...stats, liveTasks: tasks.size }),
  };
}
