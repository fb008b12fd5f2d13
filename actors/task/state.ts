/**
 * What the task actor holds in memory, shared by its parts: the live tasks,
 * the nodes as the scheduler sees them, fair-share usage, counters, and the
 * writes waiting for the next commit.
 *
 * @module
 */
import type { Bus } from "../../core/bus.ts";
import type { Clock } from "../../core/clock.ts";
import type { AuditLog } from "../../core/audit.ts";
import type { Logger } from "../../core/log.ts";
import { type Counter, DURATION_BUCKETS, type Histogram, Metrics } from "../../core/metrics.ts";
import type {
  AssignSpan,
  Counts,
  InstanceRecord,
  NodeRecord,
  RunSpec,
  State,
  SubmitReply,
  SubmitRequest,
  TaskRecord,
} from "../../core/schema.ts";
import { type BatchedWrite, instanceKey } from "../../core/kv.ts";
import { usageRecorder } from "./usage.ts";

/**
 * Longest error text kept per attempt. An instance's record holds every attempt (up to 100 retries and a few requeues
 * of lost nodes) and must fit a Deno KV value (64 KiB) whatever the nodes report; a longer text is cut, ending in "…".
 */
export const MAX_ATTEMPT_ERROR_CHARS = 160;

/** An attempt's error text, cut to {@linkcode MAX_ATTEMPT_ERROR_CHARS}. */
export const clipError = (text: string | null): string | null =>
  text === null || text.length <= MAX_ATTEMPT_ERROR_CHARS ? text : `${text.slice(0, MAX_ATTEMPT_ERROR_CHARS - 1)}…`;

/** A submit's answer when it succeeds. */
export type SubmitAnswer = Extract<SubmitReply, { ok: true }>;

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

/** Options of the task actor (`createTaskActor` in `mod.ts`). */
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
   * a stream of small result batches each commit then carries more, for
   * less manager CPU per instance (with nodes holding 25 ms of work, see
   * `prefetchLeadMs`, the wait costs them nothing); the last result of a
   * burst, and an idle actor, commit at once. @default {4}
   */
  commitIntervalMs?: number;
}

/** First attempts sent to one node in one cycle, stored as one {@linkcode AssignSpan}. */
export interface Span {
  key: Deno.KvKey;
  value: AssignSpan;
  /** How many of its instances have no record of their own yet: at 0 the span is deleted. */
  open: number;
}

/** An instance dispatched to a node and not yet ended. */
export interface Flight {
  live: Live;
  rec: InstanceRecord;
  node: string;
  assignedAt: number;
  /** The span that stands for its record while its first attempt runs. */
  span?: Span;
  /** True when it runs in the process of an earlier instance of its chunk (`[task] chunk`): it books no slot. */
  rider?: boolean;
}

/** A task that is not final yet, in memory. */
export interface Live {
  rec: TaskRecord;
  /**
   * Made once by `liveOf` and never changed, nor anything in it: assignments send this object, and its schema
   * check runs once per object (`SentAssignment` in core/schema/messages.ts). Make a new one instead.
   */
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
  /** The state its record has in Deno KV (undefined until first stored): the task counters move when it changes. */
  storedState?: State;
  /** The record of an earlier `[finalize]` run, reused (its history kept) when a rerun runs it again. */
  finalizeRec?: InstanceRecord;
}

/** A node as the scheduler sees it. */
export interface NodeSeat {
  rec: NodeRecord;
  usedSlots: number;
  usedMemory: number;
  usedGpus: number;
  flights: Set<Flight>;
  /** Moving average of how long its instances run, ms (null until one ended). */
  avgRunMs: number | null;
}

/** Writes and actions waiting for the next commit. */
export interface Pending {
  /** Instance records to write; `counted` is false for the `[finalize]` run. */
  instances: Map<string, { key: Deno.KvKey; rec: InstanceRecord; counted: boolean }>;
  /** Other writes, stored before the instance records (a rerun's removals from the failed index). */
  writes: BatchedWrite[];
  /** Spans to write, or to delete (null) when all their instances have records of their own. */
  spans: Map<string, { key: Deno.KvKey; value: AssignSpan | null }>;
  /** First attempts sent this cycle (their spans stand for their records), for progress events. */
  runs: Map<string, InstanceRecord[]>;
  tasks: Set<Live | TaskRecord>;
  /** Run once the commit is stored: assignments, done events, answers. */
  afterCommit: Array<() => void>;
}

/** An empty {@linkcode Pending}. */
export const noPending = (): Pending => ({
  instances: new Map(),
  writes: [],
  spans: new Map(),
  runs: new Map(),
  tasks: new Set(),
  afterCommit: [],
});

/** The options with their defaults. */
export type Settings = Required<Omit<TaskActorOptions, "signal">>;

/** The task actor's shared state and dependencies. */
export interface TaskState {
  bus: Bus;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
  audit?: Pick<AuditLog, "mutation">;
  signal: AbortSignal;
  settings: Settings;
  tasks: Map<string, Live>;
  nodes: Map<string, NodeSeat>;
  runningByOwner: Map<string, number>;
  /** Recently dispatched instances per owner, decaying with a half-life: the fair-share tie-breaker. */
  usageByOwner: Map<string, { value: number; at: number }>;
  stats: { commits: number; dispatched: number; results: number; ignored: number };
  meters: {
    dispatchedTotal: Counter;
    endedTotal: Counter;
    duration: Histogram;
    tasksFinished: Counter;
    /** Records an attempt's CPU time and peak memory (see `usage.ts`). */
    attemptUsage: ReturnType<typeof usageRecorder>;
  };
  pending: Pending;
  /** Schedules a cycle (place, then commit); set by the commit loop (see `store.ts`). */
  kick: () => void;
}

/** Builds the actor's state and registers its metrics. */
export function createState(deps: TaskActorDeps, options: TaskActorOptions): TaskState {
  const settings: Settings = {
    prefetchFactor: options.prefetchFactor ?? 1,
    prefetchLeadMs: options.prefetchLeadMs ?? 25,
    maxPrefetchFactor: options.maxPrefetchFactor ?? 64,
    usageHalfLifeMs: options.usageHalfLifeMs ?? 300_000,
    retryBackoffMs: options.retryBackoffMs ?? 1000,
    orphanGraceMs: options.orphanGraceMs ?? 5000,
    maxLostRequeues: options.maxLostRequeues ?? 5,
    progressMs: options.progressMs ?? 250,
    commitIntervalMs: options.commitIntervalMs ?? 4,
  };
  const tasks = new Map<string, Live>();
  const stats = { commits: 0, dispatched: 0, results: 0, ignored: 0 };
  const metrics = deps.metrics ?? new Metrics();
  const meters = {
    dispatchedTotal: metrics.counter("parallelic_instances_dispatched_total", "Instance attempts sent to nodes."),
    endedTotal: metrics.counter(
      "parallelic_instance_attempts_ended_total",
      "Instance attempts that ended, by outcome (succeeded, failed, retried, requeued, cancelled).",
    ),
    duration: metrics.histogram(
      "parallelic_instance_duration_seconds",
      "How long instance attempts ran on their node.",
      DURATION_BUCKETS,
    ),
    tasksFinished: metrics.counter("parallelic_tasks_finished_total", "Tasks that ended, by final state."),
    attemptUsage: usageRecorder(metrics),
  };
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
  return {
    bus: deps.bus,
    kv: deps.kv,
    clock: deps.clock,
    log: deps.log.scope({ actor: "task" }),
    audit: deps.audit,
    signal: options.signal,
    settings,
    tasks,
    nodes: new Map(),
    runningByOwner: new Map(),
    usageByOwner: new Map(),
    stats,
    meters,
    pending: noPending(),
    kick: () => {},
  };
}

/** An owner's recent usage, decayed to `now`. */
export const usageOf = (s: TaskState, owner: string, now = s.clock.now()) => {
  const u = s.usageByOwner.get(owner);
  return u ? u.value * 2 ** (-(now - u.at) / s.settings.usageHalfLifeMs) : 0;
};

/** Fair share as placement reads it: owners' running instances and recent usage. */
export const fairShare = (s: TaskState) => ({
  running: (owner: string) => s.runningByOwner.get(owner) ?? 0,
  usage: (owner: string) => usageOf(s, owner),
});

/** Counts an owner's running instances up or down. */
export const ownerRunning = (s: TaskState, owner: string, delta: number) => {
  s.runningByOwner.set(owner, (s.runningByOwner.get(owner) ?? 0) + delta);
};

/** Instances dispatched and not yet ended, over all tasks. */
export const runningCount = (s: TaskState) => {
  let n = 0;
  for (const t of s.tasks.values()) n += t.flights.size;
  return n;
};

/** Queues an instance's record (and its task's) for the next commit. */
export const markInstance = (s: TaskState, live: Live, rec: InstanceRecord) => {
  s.pending.instances.set(`${live.rec.id}/${rec.index}`, {
    key: instanceKey(live.rec.id, rec.index),
    rec,
    counted: !isFinalize(live.rec, rec.index),
  });
  s.pending.tasks.add(live);
};

/** Writes a span (or deletes it, when all its instances have records of their own). */
export const markSpan = (s: TaskState, span: Span) => {
  s.pending.spans.set(`${span.key[1] as string}/${span.value.from}`, {
    key: span.key,
    value: span.open > 0 ? span.value : null,
  });
};

/** Zero of each state. */
export const emptyCounts = (): Counts => ({ queued: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 });

/** Is this instance the task's `[finalize]` run (the extra instance numbered `instances`)? */
export const isFinalize = (task: TaskRecord, index: number) => index === task.spec.instances;

/** A task record as a live task with nothing queued for retry or in flight yet. */
export function liveOf(rec: TaskRecord): Live {
  const { entrypoint, workdir, args, instances, matrix, env, cpus, memoryBytes, gpus, timeoutMs } = rec.spec;
  const { command = null, inputs = null, chunk = 1, data = {}, outputs = [], finalize = null } = rec.spec;
  const run = {
    entrypoint,
    command,
    workdir,
    args,
    instances,
    matrix,
    inputs,
    chunk,
    env,
    cpus,
    memoryBytes,
    gpus,
    timeoutMs,
  };
  return {
    rec,
    run: { ...run, data, outputs, finalize, upstream: rec.upstream ?? [] },
    retry: [],
    flights: new Map(),
  };
}

/** A new task's record: queued, nothing placed yet. */
export function newTaskRecord(
  req: Pick<SubmitRequest, "owner" | "digest" | "packageBytes" | "spec" | "overrides">,
  id: string,
  now: number,
): TaskRecord {
  return {
    id,
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
    cpuMs: 0,
    wallMs: 0,
    maxRssBytes: 0,
    reruns: 0,
    held: false,
    overrides: req.overrides ?? null,
    nodeFailures: {},
    nodeSuccesses: {},
    hint: null,
  };
}
