/**
 * Every message Parallelic sends, every record it stores and every subject
 * it speaks on, declared once. Each schema is a zod schema with its type
 * beside it (`type X = z.infer<typeof X>`); each NATS subject sits next to
 * the schema of what travels on it. Parse at the edges, trust types inside.
 *
 * @module
 */
import { z } from "zod";

// ---------------------------------------------------------------------------
// Shared pieces

/** A task id: time-sortable, URL-safe (`t` + 10 base-36 time chars + 6 random). */
export const TaskId = z.string().regex(/^t[0-9a-z]{16}$/, "not a task id");
/** A task id. */
export type TaskId = z.infer<typeof TaskId>;

/**
 * A node name: what `--name` gives, or `<hostname>-<random>`. It is one NATS
 * subject token (`parallelic.node.<name>.assign`), so it has no `.`: NATS
 * permissions bind each node to the subjects that carry its name.
 */
export const NodeName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/,
  "a node name is 1-63 letters, digits, '_' or '-'",
);
/** A node name. */
export type NodeName = z.infer<typeof NodeName>;

/** A package digest: `sha256-` and 64 hex digits. */
export const Digest = z.string().regex(/^sha256-[0-9a-f]{64}$/, "not a sha256 digest");
/** A package digest. */
export type Digest = z.infer<typeof Digest>;

/** A data set name. */
export const DataSetName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  "a data set name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
);
/** A data set name. */
export type DataSetName = z.infer<typeof DataSetName>;

/** A data set version: `sha256:` and the 64 hex digits of its canonical manifest's SHA-256. */
export const DataVersion = z.string().regex(/^sha256:[0-9a-f]{64}$/, "not a data set version (sha256:<64 hex>)");
/** A data set version. */
export type DataVersion = z.infer<typeof DataVersion>;

/** The states a task or an instance can be in. */
export const State = z.enum(["queued", "running", "succeeded", "failed", "cancelled"]);
/** A task or instance state. */
export type State = z.infer<typeof State>;

/** The states in which nothing more will happen. */
export const FINAL_STATES: ReadonlySet<State> = new Set(["succeeded", "failed", "cancelled"]);

/** How many instances are in each state. */
export const Counts = z.object({
  queued: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  succeeded: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  cancelled: z.number().int().nonnegative(),
});
/** How many instances are in each state. */
export type Counts = z.infer<typeof Counts>;

/** A matrix parameter value. */
export const ParamValue = z.union([z.string(), z.number(), z.boolean()]);
/** A matrix parameter value. */
export type ParamValue = z.infer<typeof ParamValue>;

/**
 * `[task] inputs`: a file in the package with one row per instance, read
 * where it is needed (see `core/inputs.ts`), never stored per instance.
 */
export const InputsSpec = z.object({
  /** Relative to the task root. */
  path: z.string(),
  /** `lines`: each non-empty line is `PARALLELIC_INPUT`; `csv`, `jsonl`: each row gives `PARALLELIC_PARAM_<COLUMN>`. */
  format: z.enum(["lines", "csv", "jsonl"]),
});
/** A task's list inputs. */
export type InputsSpec = z.infer<typeof InputsSpec>;

/**
 * The task as the manager and nodes understand it, after task.toml was parsed
 * and checked (see `core/task_toml.ts`). Paths are normalized and inside the
 * task root.
 */
export const TaskSpec = z.object({
  name: z.string(),
  /** The program to run, relative to the task root; null when `command` is given instead. */
  entrypoint: z.string().nullable(),
  /** `[task] command`: a shell command line run with `/bin/sh -c` in the workdir, instead of an entrypoint. */
  command: z.string().nullable().default(null),
  workdir: z.string(),
  args: z.array(z.string()),
  /** Number of instances (the matrix product when there is a matrix). */
  instances: z.number().int().positive(),
  /** Matrix axes in declaration order; instance i is the mixed-radix digit string of i. */
  matrix: z.array(z.object({ name: z.string(), values: z.array(ParamValue) })),
  /**
   * `[task] chunk`: up to this many consecutive instances run in one process (never across a value of any matrix
   * key but the last); each keeps its own record. 1: one process per instance.
   */
  chunk: z.number().int().positive().default(1),
  /** `[task] inputs`: instance i runs row i of this file (instead of `instances` or a matrix). */
  inputs: InputsSpec.nullable().default(null),
  env: z.record(z.string(), z.string()),
  cpus: z.number().int().positive(),
  memoryBytes: z.number().int().nonnegative(),
  gpus: z.number().int().nonnegative(),
  labels: z.record(z.string(), z.string()),
  timeoutMs: z.number().int().positive().nullable(),
  retries: z.number().int().nonnegative(),
  priority: z.number().int().min(0).max(100),
  /** `[limits] max_running`: most instances running (or sent to nodes) at once, across all nodes; null: no limit. */
  maxRunning: z.number().int().positive().nullable().default(null),
  /**
   * `[data]`: the key (which names `PARALLELIC_DATA_<KEY>`) → a data set and
   * its version. task.toml may leave the version out or give a prefix; the
   * gateway pins it to a full version at submit.
   */
  data: z.record(z.string(), z.object({ name: DataSetName, version: z.string().nullable() })).default({}),
  /** `[outputs] paths`: globs relative to the workdir, collected besides `PARALLELIC_OUTPUT`. */
  outputs: z.array(z.string()).default([]),
  /**
   * `[after]`: tasks this one waits for; it starts once each has ended `when` asks (`succeeded`, or just `ended`), and
   * is cancelled when one ends otherwise. Its instances read their workspaces under `PARALLELIC_UPSTREAM`.
   */
  after: z.object({ tasks: z.array(TaskId), when: z.enum(["succeeded", "ended"]) }).nullable().default(null),
  /** `[finalize]`: runs once, as the extra instance numbered `instances`, after every instance succeeded. */
  finalize: z.object({
    entrypoint: z.string().nullable(),
    command: z.string().nullable().default(null),
    args: z.array(z.string()),
  }).nullable().default(null),
});
/** A checked task specification. */
export type TaskSpec = z.infer<typeof TaskSpec>;

/** A task another waits for (`[after]`), as its instances need it: where its workspace is. */
export const UpstreamRef = z.object({
  taskId: TaskId,
  instances: z.number().int().positive(),
  /** Whether it has a `[finalize]` run (whose outputs are `<task id>/finalize/`). */
  finalize: z.boolean(),
});
/** A task another waits for. */
export type UpstreamRef = z.infer<typeof UpstreamRef>;

/** What a node needs to run instances of a task (a subset of {@linkcode TaskSpec}, and its upstream tasks). */
export const RunSpec = TaskSpec.pick({
  entrypoint: true,
  command: true,
  workdir: true,
  args: true,
  instances: true,
  matrix: true,
  inputs: true,
  chunk: true,
  env: true,
  cpus: true,
  memoryBytes: true,
  gpus: true,
  timeoutMs: true,
  data: true,
  outputs: true,
  finalize: true,
}).extend({ upstream: z.array(UpstreamRef).default([]) });
/** What a node needs to run instances of a task. */
export type RunSpec = z.infer<typeof RunSpec>;

/** An error as the API and replies carry it. */
export const ErrorBody = z.object({
  code: z.string(),
  message: z.string(),
  /** The error class name (`ValidationError`, …), so a reply can be thrown again as the same kind. */
  name: z.string().optional(),
  /** A `RateLimitError`'s wait, so a reply can be thrown again with it. */
  retryAfterMs: z.number().optional(),
});
/** An error as the API and replies carry it. */
export type ErrorBody = z.infer<typeof ErrorBody>;

// ---------------------------------------------------------------------------
// Records kept in Deno KV

/** Longest last stderr line a node reports and an attempt keeps. */
export const MAX_STDERR_LINE_CHARS = 300;

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
});
/** One attempt of an instance. */
export type Attempt = z.infer<typeof Attempt>;

/** Failed attempts of a task's instances on one node after which that node takes no more of the task. */
export const AVOID_AFTER_FAILURES = 3;

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
   * {@linkcode AVOID_AFTER_FAILURES} takes no more of it while another node can (see `actors/task/placement.ts`).
   */
  nodeFailures: z.record(z.string(), z.number().int().nonnegative()).default({}),
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

/** Roles, most powerful first (gateway/auth.ts checks them). */
export const Role = z.enum(["admin", "submitter", "viewer"]);
/** A role. */
export type Role = z.infer<typeof Role>;

/** `["token", hash]`: who a token belongs to. */
export const TokenRecord = z.object({ user: z.string(), role: Role, createdAt: z.number() });
/** A token record. */
export type TokenRecord = z.infer<typeof TokenRecord>;

/** A user name: 1-64 letters, digits, `.`, `_`, `-`, `@`. */
export const UserName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/,
  "a user name is 1-64 letters, digits, '.', '_', '@' or '-'",
);

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

// ---------------------------------------------------------------------------
// Messages and their subjects

/** A NATS subject and the schema of what travels on it. */
export interface Subject<S extends z.ZodType> {
  /** The concrete subject (or a wildcard pattern to subscribe to). */
  readonly subject: string;
  /** Schema of the payload. */
  readonly schema: S;
  /**
   * Binds the sender: the payload field that must equal the subject token at
   * the pattern's `*`. NATS permissions let a node publish only on subjects
   * that carry its own name, so a message claiming another name is dropped.
   */
  readonly sender?: string;
}

/** A request subject: a request schema and a reply schema. */
export interface RequestSubject<Q extends z.ZodType, R extends z.ZodType> extends Subject<Q> {
  /** Schema of the reply. */
  readonly reply: R;
  /** The inbox prefix requesters use, when not the serving process's own (see `core/bus.ts`). */
  readonly inbox?: string;
}

function subject<S extends z.ZodType>(name: string, schema: S, sender?: string): Subject<S> {
  return { subject: name, schema, sender };
}

function request<Q extends z.ZodType, R extends z.ZodType>(
  name: string,
  schema: Q,
  reply: R,
  sender?: string,
): RequestSubject<Q, R> {
  return { subject: name, schema, reply, sender };
}

/** Replies either carry a value or an error. */
function replyOf<T extends z.ZodRawShape>(shape: T) {
  // Build reply schemas once, at module level: zod compiles a schema on its first parse (~0.1 ms), so a
  // schema made per message costs that on every message.
  return z.union([
    z.object({ ok: z.literal(true), ...shape }),
    z.object({ ok: z.literal(false), error: ErrorBody }),
  ]);
}

/** A client's key for a submit it may send again: 1-200 printable ASCII characters. */
export const IdempotencyKey = z.string().regex(/^[\x21-\x7e]{1,200}$/, "1-200 printable ASCII characters, no spaces");

/**
 * `["submit-key", owner, key]`: the task a submit with that Idempotency-Key
 * made (kept for a day), and what it submitted: the same key with another
 * package or name is refused.
 */
export const SubmitKeyRecord = z.object({ taskId: TaskId, atMs: z.number(), digest: z.string(), name: z.string() });
/** A submit key record. */
export type SubmitKeyRecord = z.infer<typeof SubmitKeyRecord>;

/** Gateway → task actor: create a task from a stored package. */
export const SubmitRequest = z.object({
  digest: Digest,
  packageBytes: z.number().int().nonnegative(),
  spec: TaskSpec,
  owner: z.string(),
  /** The overrides laid over task.toml (already merged into `spec`), kept to be shown. */
  overrides: z.string().optional(),
  /** Where the submit came from: the task actor stores the audit entry with the task. */
  address: z.string().optional(),
  /**
   * The client's `Idempotency-Key`: a submit repeated with the same key by the
   * same owner within a day answers the task the first one made.
   */
  key: IdempotencyKey.optional(),
});
/** A submit request. */
export type SubmitRequest = z.infer<typeof SubmitRequest>;
/** Reply to {@linkcode SubmitRequest}. */
export const SubmitReply = replyOf({
  id: TaskId,
  state: State,
  instances: z.number().int(),
  /** True when an earlier submit with the same key made this task. */
  replayed: z.boolean().optional(),
});
/** Reply to a submit. */
export type SubmitReply = z.infer<typeof SubmitReply>;
/** `parallelic.task.submit` */
export const taskSubmit = request("parallelic.task.submit", SubmitRequest, SubmitReply);

/** Gateway → task actor: cancel a task. */
export const CancelRequest = z.object({ taskId: TaskId, by: z.string() });
/** A cancel request. */
export type CancelRequest = z.infer<typeof CancelRequest>;
/** Reply to {@linkcode CancelRequest}. */
export const CancelReply = replyOf({ state: State });
/** Reply to a cancel. */
export type CancelReply = z.infer<typeof CancelReply>;
/** `parallelic.task.cancel` */
export const taskCancel = request("parallelic.task.cancel", CancelRequest, CancelReply);

/**
 * Gateway → task actor: run again, in the same task, instances of a task that ended: those that did not succeed
 * (`"failed"`: failed or cancelled), or these indexes; its `[finalize]` runs again once every instance succeeded
 * (`finalize` alone reruns just it).
 */
export const RerunRequest = z.object({
  taskId: TaskId,
  by: z.string(),
  instances: z.union([z.literal("failed"), z.array(z.number().int().nonnegative())]).optional(),
  finalize: z.boolean().optional(),
});
/** A rerun request. */
export type RerunRequest = z.infer<typeof RerunRequest>;
/** Reply to {@linkcode RerunRequest}: the task's state and what was queued again. */
export const RerunReply = replyOf({ state: State, instances: z.number().int().nonnegative(), finalize: z.boolean() });
/** Reply to a rerun. */
export type RerunReply = z.infer<typeof RerunReply>;
/** `parallelic.task.rerun` */
export const taskRerun = request("parallelic.task.rerun", RerunRequest, RerunReply);

/** Gateway → task actor: change a task that has not ended: its priority, held or released. */
export const UpdateRequest = z.object({
  taskId: TaskId,
  by: z.string(),
  priority: z.number().int().min(0).max(100).optional(),
  held: z.boolean().optional(),
});
/** An update request. */
export type UpdateRequest = z.infer<typeof UpdateRequest>;
/** Reply to {@linkcode UpdateRequest}: the task as it is now. */
export const UpdateReply = replyOf({ state: State, priority: z.number().int(), held: z.boolean() });
/** `parallelic.task.update` */
export const taskUpdate = request("parallelic.task.update", UpdateRequest, UpdateReply);

/** Gateway → task actor: why is this task (or instance) where it is? */
export const ExplainRequest = z.object({ taskId: TaskId, index: z.number().int().nonnegative().optional() });
/** An explain request. */
export type ExplainRequest = z.infer<typeof ExplainRequest>;
/** Reply to {@linkcode ExplainRequest}: the state and, in words, why. */
export const ExplainReply = replyOf({ state: State, explanation: z.string() });
/** Reply to an explain. */
export type ExplainReply = z.infer<typeof ExplainReply>;
/** `parallelic.task.explain` */
export const taskExplain = request("parallelic.task.explain", ExplainRequest, ExplainReply);

/** Task actor → anyone: a task reached a final state. */
export const TaskDone = z.object({ taskId: TaskId, state: State, counts: Counts });
/** A task-done event. */
export type TaskDone = z.infer<typeof TaskDone>;
/** `parallelic.task.<id>.done` */
export const taskDone = (taskId: string) => subject(`parallelic.task.${taskId}.done`, TaskDone);
/** Wildcard for every task's done event. */
export const taskDoneAll = subject("parallelic.task.*.done", TaskDone);

/** Most instance changes one {@linkcode TaskProgress} event lists; past it, `changed` is null. */
export const MAX_PROGRESS_CHANGES = 5000;

/**
 * Task actor → gateway (and anyone): a task's state and counts after a commit,
 * at most a few times a second per task (the final one always goes out).
 */
export const TaskProgress = z.object({
  taskId: TaskId,
  name: z.string(),
  owner: z.string(),
  state: State,
  counts: Counts,
  instances: z.number().int().positive(),
  createdAt: z.number(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  reason: z.string().nullable(),
  /** The task's usage totals so far (see {@linkcode TaskRecord}), so that live views keep them current. */
  cpuMs: z.number().int().nonnegative().optional(),
  wallMs: z.number().int().nonnegative().optional(),
  maxRssBytes: z.number().int().nonnegative().optional(),
  /**
   * Instances whose state changed since the task's previous progress event, as
   * `[index, state]` pairs; null when more than {@linkcode MAX_PROGRESS_CHANGES}
   * changed (read the states again).
   */
  changed: z.array(z.tuple([z.number().int().nonnegative(), State])).nullable(),
});
/** A task-progress event. */
export type TaskProgress = z.infer<typeof TaskProgress>;
/** `parallelic.task.<id>.progress` */
export const taskProgress = (taskId: string) => subject(`parallelic.task.${taskId}.progress`, TaskProgress);
/** Wildcard for every task's progress events. */
export const taskProgressAll = subject("parallelic.task.*.progress", TaskProgress);

/** An instance attempt, as nodes and the manager name it. */
export const InstanceRef = z.object({
  taskId: TaskId,
  index: z.number().int().nonnegative(),
  attempt: z.number().int().nonnegative(),
});
/** An instance attempt reference. */
export type InstanceRef = z.infer<typeof InstanceRef>;

/** Node → node actor: join (or re-join) the manager. */
export const RegisterRequest = NodeCapacity.extend({
  name: NodeName,
  version: z.string(),
  hostname: z.string(),
  /** Instances the node still holds from before (after a manager restart or a partition). */
  holding: z.array(InstanceRef),
});
/** A register request. */
export type RegisterRequest = z.infer<typeof RegisterRequest>;
/** Reply to {@linkcode RegisterRequest}: the timings the node must keep. */
export const RegisterReply = replyOf({
  heartbeatMs: z.number().int().positive(),
  leaseMs: z.number().int().positive(),
});
/** Reply to a register. */
export type RegisterReply = z.infer<typeof RegisterReply>;
/** `parallelic.node.<name>.register`: a node registers on a subject that carries its name. */
export const nodeRegister = (name: string) =>
  request(`parallelic.node.${name}.register`, RegisterRequest, RegisterReply, "name");
/** Every node's register subject; `name` must match the subject. */
export const nodeRegisterAll = nodeRegister("*");

/** Node → manager, every `heartbeatMs`: alive, and what it holds. */
export const Heartbeat = z.object({
  name: NodeName,
  sentAt: z.number(),
  usedSlots: z.number().int().nonnegative(),
  holding: z.array(InstanceRef),
});
/** A heartbeat. */
export type Heartbeat = z.infer<typeof Heartbeat>;
/** `parallelic.node.<name>.heartbeat` */
export const nodeHeartbeat = (name: string) => subject(`parallelic.node.${name}.heartbeat`, Heartbeat, "name");
/** Every node's heartbeat subject; `name` must match the subject. */
export const nodeHeartbeatAll = nodeHeartbeat("*");

/** Node → node actor: I am stopping; place nothing new on me (I finish what runs, up to my grace period). */
export const Leaving = z.object({ name: NodeName });
/** `parallelic.node.<name>.leaving` */
export const nodeLeaving = (name: string) => subject(`parallelic.node.${name}.leaving`, Leaving, "name");
/** Every node's leaving subject; `name` must match the subject. */
export const nodeLeavingAll = nodeLeaving("*");

/**
 * Node → node actor: I stopped; every result I will ever send was acknowledged.
 * What I still held goes back to the queue at once, without waiting for my lease.
 */
export const Left = z.object({ name: NodeName });
/** Reply to {@linkcode Left}. */
export const LeftReply = replyOf({});
/** `parallelic.node.<name>.left` */
export const nodeLeft = (name: string) => request(`parallelic.node.${name}.left`, Left, LeftReply, "name");
/** Every node's left subject; `name` must match the subject. */
export const nodeLeftAll = nodeLeft("*");

/** Node actor → task actor and gateway: a node joined, changed state, was lost, or left. */
export const NodeEvent = z.object({
  kind: z.enum(["joined", "updated", "lost", "left"]),
  node: NodeRecord,
});
/** A node event. */
export type NodeEvent = z.infer<typeof NodeEvent>;
/** `parallelic.nodes.event` */
export const nodesEvent = subject("parallelic.nodes.event", NodeEvent);

/** Anyone → node actor: the nodes it knows. */
export const NodesListReply = replyOf({ nodes: z.array(NodeRecord) });
/** Reply listing nodes. */
export type NodesListReply = z.infer<typeof NodesListReply>;
/** `parallelic.nodes.list` */
export const nodesList = request("parallelic.nodes.list", z.object({}), NodesListReply);

/** Gateway → node actor: drain or resume a node. */
export const DrainRequest = z.object({ name: NodeName, drain: z.boolean() });
/** A drain request. */
export type DrainRequest = z.infer<typeof DrainRequest>;
/** `parallelic.nodes.drain` */
export const nodesDrain = request(
  "parallelic.nodes.drain",
  DrainRequest,
  replyOf({ node: NodeRecord }),
);

/** One instance to run, within an {@linkcode Assignment}. */
export const AssignItem = z.object({
  index: z.number().int().nonnegative(),
  attempt: z.number().int().nonnegative(),
  /** This item and the `chunk - 1` items after it in the list run in one process (`[task] chunk`). */
  chunk: z.number().int().min(2).optional(),
});
/** One instance to run. */
export type AssignItem = z.infer<typeof AssignItem>;

/** Task actor → node: run these instances (one message carries many). */
export const Assignment = z.object({
  tasks: z.array(z.object({
    taskId: TaskId,
    digest: Digest,
    run: RunSpec,
    items: z.array(AssignItem),
  })),
});
/** An assignment batch. */
export type Assignment = z.infer<typeof Assignment>;
/** `parallelic.node.<name>.assign` */
export const nodeAssign = (name: string) => subject(`parallelic.node.${name}.assign`, Assignment);

/** Task actor → node: stop these instances (all of a task when `index` is absent). */
export const Kill = z.object({
  items: z.array(z.object({
    taskId: TaskId,
    index: z.number().int().nonnegative().optional(),
    attempt: z.number().int().nonnegative().optional(),
  })),
  reason: z.string(),
});
/** A kill order. */
export type Kill = z.infer<typeof Kill>;
/** `parallelic.node.<name>.kill` */
export const nodeKill = (name: string) => subject(`parallelic.node.${name}.kill`, Kill);

/**
 * Node actor → node: you are drained (or resumed). Drained, the node starts
 * nothing more: what waits on it for a slot goes back as lost results.
 */
export const DrainNotice = z.object({ drain: z.boolean() });
/** `parallelic.node.<name>.drain` */
export const nodeDrain = (name: string) => subject(`parallelic.node.${name}.drain`, DrainNotice);

/** Node actor → node: you are unknown (lost or forgotten); register again. */
export const Rejoin = z.object({ reason: z.string() });
/** `parallelic.node.<name>.rejoin` */
export const nodeRejoin = (name: string) => subject(`parallelic.node.${name}.rejoin`, Rejoin);

/** How one attempt ended, as the node saw it. */
export const Result = InstanceRef.extend({
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  startedAt: z.number().nullable(),
  endedAt: z.number(),
  /** Set when the node could not run the instance (fetch, unpack or spawn failed) or timed out. */
  error: z.string().nullable(),
  /**
   * True when the node could not run it for reasons of its own (NATS, the package cache), not the instance's:
   * requeued elsewhere without using up a retry (a few times at most).
   */
  lost: z.boolean().optional(),
  /** Bytes of outputs stored in the workspace (stored before the result is sent). */
  outputBytes: z.number().int().nonnegative().default(0),
  /** Bytes of stdout and stderr published to the log stream. */
  logBytes: z.number().int().nonnegative().default(0),
  /** CPU time (user + system) of the whole process tree, ms. */
  cpuMs: z.number().int().nonnegative().default(0),
  /** Peak memory of the whole process tree, bytes. */
  maxRssBytes: z.number().int().nonnegative().default(0),
  /** The last non-empty line written to stderr, clipped; absent when there was none. */
  lastStderr: z.string().max(MAX_STDERR_LINE_CHARS).optional(),
});
/** An instance result. */
export type Result = z.infer<typeof Result>;

/** Node → task actor: results, batched; the reply comes once they are stored. */
export const ResultBatch = z.object({ node: NodeName, results: z.array(Result) });
/** A result batch. */
export type ResultBatch = z.infer<typeof ResultBatch>;
/** Reply to a {@linkcode ResultBatch}, once it is stored. */
export const ResultsReply = replyOf({ accepted: z.number().int(), ignored: z.number().int() });
/** `parallelic.node.<name>.results`: a node reports on a subject that carries its name. */
export const taskResults = (node: string) =>
  request(`parallelic.node.${node}.results`, ResultBatch, ResultsReply, "node");
/** Every node's results subject; `node` must match the subject. */
export const taskResultsAll = taskResults("*");

/** Node → manager, over a connection that holds only the join token: let this node key in. */
export const JoinRequest = z.object({
  name: NodeName,
  /** The node's own NATS user: a public nkey (`U` and 55 base-32 characters). */
  nkey: z.string().regex(/^U[A-Z2-7]{55}$/, "not a public user nkey"),
  hostname: z.string().max(255),
  version: z.string().max(64),
});
/** A join request. */
export type JoinRequest = z.infer<typeof JoinRequest>;
/** Reply to {@linkcode JoinRequest}, sent once the node's user is live in NATS. */
export const JoinReply = replyOf({ name: NodeName });
/** Reply to a join. */
export type JoinReply = z.infer<typeof JoinReply>;
/** `parallelic.join`: the only subject the join token may publish on. */
export const nodeJoin: RequestSubject<typeof JoinRequest, typeof JoinReply> = {
  ...request("parallelic.join", JoinRequest, JoinReply),
  inbox: "_INBOX_join",
};

/**
 * Log chunks of an instance travel on (and are kept in the LOGS stream under)
 * this subject; the last token is the node that wrote them, which the log
 * relay (`actors/log_relay.ts`) takes from the node's own subject.
 */
export const logSubject = (taskId: string, index: number, node: string) => `parallelic.log.${taskId}.${index}.${node}`;
/** All log subjects of one instance (every node that ran an attempt of it). */
export const logSubjectsOfInstance = (taskId: string, index: number) => `parallelic.log.${taskId}.${index}.*`;
/** All log subjects of a task. */
export const logSubjectsOfTask = (taskId: string) => `parallelic.log.${taskId}.>`;
/** The JetStream stream that keeps logs. */
export const LOG_STREAM = "PARALLELIC_LOGS";
/** The object-store bucket that keeps packages, named by digest. */
export const PACKAGE_BUCKET = "parallelic-packages";
/**
 * The object-store bucket that keeps data sets: each distinct file content
 * once (`blob/<sha256 hex>`), and each version's manifest
 * (`manifest/<sha256 hex>`); uploads land in `tmp/<uuid>` first.
 */
export const DATA_BUCKET = "parallelic-data";
/** Object name of a data file's content. */
export const dataBlobObject = (hex: string) => `blob/${hex}`;
/** Object name of a data set version's manifest. */
export const dataManifestObject = (version: DataVersion) => `manifest/${version.slice("sha256:".length)}`;
/** The object-store bucket that keeps task workspaces: one tar of outputs per instance, and finalize's. */
export const WORKSPACE_BUCKET = "parallelic-workspaces";
/** Object name of the outputs of instance `index` (or of finalize) of a task. */
export const outputObject = (taskId: string, index: number | "finalize") => `${taskId}/${index}`;

// ---------------------------------------------------------------------------
// API views

/** `GET /api/v1/tasks/{id}` */
export const TaskView = TaskRecord.omit({ nextIndex: true }).extend({
  instances: z.number().int(),
});
/** A task as the API shows it. */
export type TaskView = z.infer<typeof TaskView>;

/** `GET /api/v1/tasks/{id}/instances/{index}` */
export const InstanceView = z.object({
  taskId: TaskId,
  index: z.number().int(),
  state: State,
  attempt: z.number().int(),
  node: z.string().nullable(),
  exitCode: z.number().int().nullable(),
  signal: z.string().nullable(),
  startedAt: z.number().nullable(),
  endedAt: z.number().nullable(),
  params: z.record(z.string(), ParamValue),
  history: z.array(Attempt),
});
/** An instance as the API shows it. */
export type InstanceView = z.infer<typeof InstanceView>;

/** `GET /api/v1/data`: a data set and what it holds. */
export const DataSetView = z.object({
  name: DataSetName,
  /** Its first uploader: only they and admins add versions or change `shared`. */
  owner: z.string(),
  /** Whether every user may see and use it (otherwise only its owner and admins). */
  shared: z.boolean(),
  versions: z.array(DataVersionRecord),
  /** Bytes of distinct content across its versions. */
  bytes: z.number().int().nonnegative(),
});
/** A data set as the API shows it. */
export type DataSetView = z.infer<typeof DataSetView>;

/** `GET /api/v1/storage`: bytes each store holds. */
export const StorageView = z.object({
  packages: z.number().int().nonnegative(),
  data: z.number().int().nonnegative(),
  workspaces: z.number().int().nonnegative(),
  logs: z.number().int().nonnegative(),
});
/** Storage use as the API shows it. */
export type StorageView = z.infer<typeof StorageView>;

/** `POST /api/v1/tasks` answer. */
export const SubmitView = z.object({
  id: TaskId,
  state: State,
  instances: z.number().int(),
  /** True (and HTTP 200, not 201) when an earlier submit with the same Idempotency-Key made this task. */
  replayed: z.boolean().optional(),
  /** Why no node the manager knows could ever run it (it is accepted and waits; `?strict=1` refuses it instead). */
  warnings: z.array(z.string()).optional(),
});
/** A submit answer. */
export type SubmitView = z.infer<typeof SubmitView>;

/** `POST /api/v1/packages/check` answer: what a submit of the same package would make, or its error. */
export const PackageCheckView = z.union([
  z.object({
    ok: z.literal(true),
    digest: Digest,
    packageBytes: z.number().int().nonnegative(),
    entries: z.number().int().nonnegative(),
    unpackedBytes: z.number().int().nonnegative(),
    spec: TaskSpec,
  }),
  z.object({ ok: z.literal(false), error: ErrorBody.omit({ name: true, retryAfterMs: true }) }),
]);
/** A package check answer. */
export type PackageCheckView = z.infer<typeof PackageCheckView>;

/** One letter per state in {@linkcode InstanceStatesView}: queued, running, succeeded, failed, cancelled. */
export const STATE_LETTERS: Readonly<Record<State, string>> = {
  queued: "q",
  running: "r",
  succeeded: "s",
  failed: "f",
  cancelled: "c",
};

/** `GET /api/v1/tasks/{id}/states`: the states of a page of instances, one letter each. */
export const InstanceStatesView = z.object({
  from: z.number().int().nonnegative(),
  total: z.number().int().nonnegative(),
  states: z.string().regex(/^[qrsfc]*$/),
});
/** A page of instance states. */
export type InstanceStatesView = z.infer<typeof InstanceStatesView>;

/** `GET /api/v1/events`, event `heartbeats`: the nodes heard from in the last second. */
export const HeartbeatsView = z.object({
  nodes: z.array(z.object({ name: NodeName, usedSlots: z.number().int().nonnegative(), seenAt: z.number() })),
});
/** A batch of heartbeats. */
export type HeartbeatsView = z.infer<typeof HeartbeatsView>;

/** A user as the API shows it (never the hash). */
export type UserView = Omit<UserRecord, "tokenHash">;
