/**
 * Records kept in Deno KV, each under the key its doc names (the key map is
 * `core/kv.ts`): tasks, instances, assignment spans, nodes, data sets and
 * their versions and uses, users, tokens and submit keys.
 *
 * @module
 */
import { z } from "zod";
import { Counts, DataSetName, DataVersion, Digest, NodeName, Role, State, TaskId, UserName } from "./ids.ts";
import { NotifyOn, TaskSpec, UpstreamRef } from "./task_spec.ts";

/** Longest last stderr line a node reports and an attempt keeps. */
export const MAX_STDERR_LINE_CHARS = 300;
/** Longest hint a node reports with a result (see `node/output_hint.ts`). */
export const MAX_HINT_CHARS = 400;

/** One attempt of an instance, as kept in its history. */
export const Attempt = z.object({
  attempt: z.number().int().nonnegative(),
  node: z.string(),
  assignedAt: z.number(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  /** Why the attempt ended without an exit code (node lost, spawn failed, …). */
  error: z.string().nullable(),
  /**
   * True when the attempt ended through its node's trouble (node lost or left, NATS or the package unreachable),
   * not the instance's: requeued without using up a retry. Absent in records stored before this field.
   */
  lost: z.boolean().optional(),
  /** Bytes of outputs the attempt stored in the task's workspace. */
  outputBytes: z.number().int().nonnegative().optional(),
  /** CPU time (user + system) of the attempt's whole process tree, ms. */
  cpuMs: z.number().int().nonnegative().optional(),
  /** Peak memory of the attempt's whole process tree, bytes. */
  maxRssBytes: z.number().int().nonnegative().optional(),
  /** The last line the attempt wrote to stderr (clipped), when it wrote any. */
  lastStderr: z.string().max(MAX_STDERR_LINE_CHARS).optional(),
  /**
   * The first and last instance of the chunk (`[task] chunk`) whose one process ran this attempt, when it held more
   * than one: the chunk's log is kept under its first instance.
   */
  chunk: z.object({ first: z.number().int().nonnegative(), last: z.number().int().nonnegative() }).optional(),
  /** What the attempt likely got wrong, with the fix: it stored no outputs but wrote files in its workdir. */
  hint: z.string().max(MAX_HINT_CHARS).optional(),
});
/** One attempt of an instance. */
export type Attempt = z.infer<typeof Attempt>;

export { AVOID_AFTER_FAILURES } from "../outcome.ts";

/** `["task", id]`: a task and its per-state counts (status reads never scan instances). */
export const TaskRecord = z.object({
  id: TaskId,
  name: z.string(),
  owner: z.string(),
  digest: Digest,
  packageBytes: z.number().int().nonnegative(),
  spec: TaskSpec,
  state: State,
  counts: Counts,
  /** Instances below this index have been dispatched at least once. */
  nextIndex: z.number().int().nonnegative(),
  createdAt: z.number(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  /** Why the task failed or was cancelled, when it was. */
  reason: z.string().nullable(),
  /** The `[after]` tasks, as its instances need them (see {@linkcode UpstreamRef}). */
  upstream: z.array(UpstreamRef).optional(),
  /** The `[after]` tasks that have not ended yet: nothing of this task is placed until none is left. */
  waitingOn: z.array(TaskId).optional(),
  /** State of the `[finalize]` run: null until every instance succeeded (or when there is none). */
  finalize: State.nullable().default(null),
  /** Bytes of outputs in the task's workspace (the last stored attempt of each instance). */
  outputBytes: z.number().int().nonnegative().default(0),
  /** Bytes of logs the task's attempts wrote. */
  logBytes: z.number().int().nonnegative().default(0),
  /** CPU time of every attempt's process tree, summed, ms. */
  cpuMs: z.number().int().nonnegative().default(0),
  /** Wall time of every attempt that started, summed, ms (times `spec.cpus`: the CPU time asked for). */
  wallMs: z.number().int().nonnegative().default(0),
  /** The largest peak memory of any attempt, bytes. */
  maxRssBytes: z.number().int().nonnegative().default(0),
  /** How many times the task was rerun after it ended (see {@linkcode RerunRequest}). */
  reruns: z.number().int().nonnegative().default(0),
  /** Held: nothing new of it is dispatched (what runs goes on) until it is released. */
  held: z.boolean().default(false),
  /** The TOML fragment laid over the package's task.toml at submit (multipart field `overrides`), if any. */
  overrides: z.string().nullable().default(null),
  /**
   * Failed attempts of its instances per node since it was submitted or last rerun: a node with
   * {@linkcode AVOID_AFTER_FAILURES}, and none that succeeded, takes no more of it (see `actors/task/placement.ts`).
   */
  nodeFailures: z.record(z.string(), z.number().int().nonnegative()).default({}),
  /**
   * Attempts of its instances that succeeded per node since it was submitted or last rerun: a node where some did is
   * not avoided (its failures are the instances' own).
   */
  nodeSuccesses: z.record(z.string(), z.number().int().nonnegative()).default({}),
  /**
   * The first hint an instance's result brought since it was submitted or last rerun, naming the instance: it
   * stored no outputs but wrote files in its workdir (see `node/output_hint.ts`).
   */
  hint: z.string().nullable().default(null),
});
/** A task record. */
export type TaskRecord = z.infer<typeof TaskRecord>;

/**
 * `["instance", taskId, index]`: written when an instance ends or is requeued,
 * and when a retry is dispatched; a first attempt runs under its
 * {@linkcode AssignSpan} until then.
 */
export const InstanceRecord = z.object({
  index: z.number().int().nonnegative(),
  state: State,
  attempt: z.number().int().nonnegative(),
  node: z.string().nullable(),
  /** Earliest time a retry may be dispatched. */
  notBefore: z.number().nullable(),
  history: z.array(Attempt),
  /** Where in `history` its latest rerun began: retries are counted from there. Absent until it is rerun. */
  rerunAt: z.number().int().nonnegative().optional(),
});
/** An instance record. */
export type InstanceRecord = z.infer<typeof InstanceRecord>;

/**
 * `["span", taskId, from]`: instances `from` to `to - 1`, sent for their first
 * attempt to one node in one placement cycle. It stands for their instance
 * records while they run (one write per batch instead of one per instance),
 * and is deleted once each of them has a record of its own.
 */
export const AssignSpan = z.object({
  from: z.number().int().nonnegative(),
  to: z.number().int().positive(),
  node: z.string(),
  assignedAt: z.number(),
});
/** An assignment span. */
export type AssignSpan = z.infer<typeof AssignSpan>;

/** A GPU as `nvidia-smi --query-gpu=index,uuid,name,memory.total` lists it. */
export const GpuDevice = z.object({
  index: z.number().int().nonnegative(),
  uuid: z.string().max(100),
  name: z.string().max(100),
  memoryMiB: z.number().int().nonnegative(),
});
/** A GPU of a node. */
export type GpuDevice = z.infer<typeof GpuDevice>;

/** How a node holds instances to what they asked for (see `node/limits.ts`). */
export const NodeLimits = z.object({
  /** How CPUs are pinned: `sched_setaffinity`, or `none` where the C library cannot be loaded. */
  cpus: z.enum(["sched_setaffinity", "none"]),
  /** How `memory` is enforced: a cgroup v2 `memory.max`, or the node watching the tree's RSS. */
  memory: z.enum(["cgroup2", "rss-watch"]),
  /** Where usage is read: the instance's cgroup v2 `cpu.stat` and memory, or /proc. */
  usage: z.enum(["cgroup2", "proc"]),
  /**
   * With usage from cgroup v2: whether its hierarchy is mounted with `favordynmods`, without which each
   * instance's move into its cgroup may wait for an RCU grace period (milliseconds on an idle node).
   */
  cgroupFavorDynmods: z.boolean().optional(),
});
/** How a node enforces limits. */
export type NodeLimits = z.infer<typeof NodeLimits>;

/** What a node offers. */
export const NodeCapacity = z.object({
  slots: z.number().int().positive(),
  cpus: z.number().int().positive(),
  memoryBytes: z.number().int().nonnegative(),
  gpus: z.number().int().nonnegative(),
  labels: z.record(z.string(), z.string()),
  /** Its GPUs, as nvidia-smi listed them (absent from older nodes). */
  gpuDevices: z.array(GpuDevice).max(64).optional(),
  /** How it enforces `[resources]` (absent from older nodes). */
  limits: NodeLimits.optional(),
});
/** What a node offers. */
export type NodeCapacity = z.infer<typeof NodeCapacity>;

/**
 * Node states: `ready` takes work, `draining` finishes what it runs, `lost`
 * missed its lease, `left` stopped cleanly.
 */
export const NodeState = z.enum(["ready", "draining", "lost", "left"]);
/** A node state. */
export type NodeState = z.infer<typeof NodeState>;

/** `["node", name]`: a node the manager knows. */
export const NodeRecord = NodeCapacity.extend({
  name: NodeName,
  state: NodeState,
  /** Set by `nodes drain`; survives re-registration. */
  drain: z.boolean(),
  version: z.string(),
  hostname: z.string(),
  joinedAt: z.number(),
  lastSeenAt: z.number(),
  /** Slots in use at the last heartbeat. */
  usedSlots: z.number().int().nonnegative(),
  /** Instances held at the last heartbeat (queued on the node, running, or unreported). */
  holding: z.number().int().nonnegative(),
  /** Manager clock minus node clock at the last heartbeat, ms (includes transit time). */
  clockSkewMs: z.number().optional(),
});
/** A node record. */
export type NodeRecord = z.infer<typeof NodeRecord>;

/** `["data", name, version]`: one version of a data set (its manifest is in {@linkcode DATA_BUCKET}). */
export const DataVersionRecord = z.object({
  name: DataSetName,
  version: DataVersion,
  files: z.number().int().nonnegative(),
  /** Total size of its files. */
  bytes: z.number().int().nonnegative(),
  /** Bytes this upload added to the store (content not stored before). */
  newBytes: z.number().int().nonnegative(),
  createdAt: z.number(),
  /** Last time this content was put; the newest version is the one put last. */
  putAt: z.number(),
  owner: z.string(),
});
/** A data set version record. */
export type DataVersionRecord = z.infer<typeof DataVersionRecord>;

/**
 * `["data-set", name]`: who owns a data set (its first uploader) and whether
 * other users may see and use it. Data sets stored before this record
 * existed have none: they are shared, owned by their oldest version's owner.
 */
export const DataSetRecord = z.object({
  name: DataSetName,
  owner: z.string(),
  shared: z.boolean(),
  createdAt: z.number(),
});
/** A data set record. */
export type DataSetRecord = z.infer<typeof DataSetRecord>;

/** `["data-use", version, taskId]`: a task uses a data set version (deleting it is refused while the task lives). */
export const DataUseRecord = z.object({ taskId: TaskId, name: DataSetName, key: z.string() });
/** A data use record. */
export type DataUseRecord = z.infer<typeof DataUseRecord>;

/** `["token", hash]`: who a token belongs to. */
export const TokenRecord = z.object({ user: z.string(), role: Role, createdAt: z.number() });
/** A token record. */
export type TokenRecord = z.infer<typeof TokenRecord>;

/** `["user", name]`: a user, their role and the hash of their current token. */
export const UserRecord = z.object({
  name: UserName,
  role: Role,
  createdAt: z.number(),
  tokenHash: z.string(),
  tokenCreatedAt: z.number(),
});
/** A user record. */
export type UserRecord = z.infer<typeof UserRecord>;

/**
 * `["submit-key", owner, key]`: the task a submit with that Idempotency-Key
 * made (kept for a day), and what it submitted: the same key with another
 * package or name is refused.
 */
export const SubmitKeyRecord = z.object({ taskId: TaskId, atMs: z.number(), digest: z.string(), name: z.string() });
/** A submit key record. */
export type SubmitKeyRecord = z.infer<typeof SubmitKeyRecord>;

/** Most tries kept in a task's notification record (the latest). */
export const MAX_KEPT_DELIVERIES = 20;

/** One try to deliver a notification. */
export const NotifyDelivery = z.object({
  /** When it was made. */
  at: z.number(),
  /** 1 for the first try. */
  attempt: z.number().int().positive(),
  /** `delivered`: a 2xx answer; `failed`: tried again later; `gave_up`: not tried again. */
  status: z.enum(["delivered", "failed", "gave_up"]),
  /** The receiver's HTTP status, when it answered. */
  httpStatus: z.number().int().nullable(),
  /** What went wrong, when something did. */
  error: z.string().nullable(),
});
/** One try to deliver a notification. */
export type NotifyDelivery = z.infer<typeof NotifyDelivery>;

/** Where a task's notification stands. */
export const NotifyPhase = z.enum(["waiting", "skipped", "pending", "retrying", "delivered", "gave_up"]);
/** Where a task's notification stands. */
export type NotifyPhase = z.infer<typeof NotifyPhase>;

/** `["notify", taskId]`: the latest notification of a task and its tries. */
export const NotifyStatus = z.object({
  phase: NotifyPhase,
  /** The task state it tells of. */
  state: State,
  /** When the next try is due, while one is. */
  nextAt: z.number().nullable(),
  deliveries: z.array(NotifyDelivery).max(MAX_KEPT_DELIVERIES),
});
/** The latest notification of a task. */
export type NotifyStatus = z.infer<typeof NotifyStatus>;

/** A task's webhook as the API shows it: `[notify]` and how its notification went. */
export const NotifyView = NotifyStatus.extend({ url: z.string(), on: z.array(NotifyOn) });
/** A task's webhook as the API shows it. */
export type NotifyView = z.infer<typeof NotifyView>;
