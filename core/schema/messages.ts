/**
 * Messages and the NATS subjects they travel on: each subject sits next to the
 * schema of its payload and, for a request, of its reply. Requests to the task
 * actor, task events, and what nodes and the node actor say to each other.
 * Who may use which subject is `core/subjects.ts`.
 *
 * @module
 */
import { z } from "zod";
import { Counts, Digest, IdempotencyKey, NodeName, State, TaskId } from "./ids.ts";
import { MAX_HINT_CHARS, MAX_STDERR_LINE_CHARS, NodeCapacity, NodeRecord, NotifyStatus } from "./records.ts";
import { RunSpec, TaskSpec } from "./task_spec.ts";

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
  /**
   * What the sender checks a message against instead of `schema`, when that
   * costs less for the same verdict (a part already checked once is not
   * checked again). Receivers always check `schema`.
   */
  readonly sendSchema?: z.ZodType<z.output<S>, z.input<S>>;
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

/** Notify service → gateway (and anyone): how a task's notification went, after each try. */
export const TaskNotified = z.object({ taskId: TaskId, owner: z.string(), notify: NotifyStatus });
/** A task-notified event. */
export type TaskNotified = z.infer<typeof TaskNotified>;
/** `parallelic.task.<id>.notified` */
export const taskNotified = (taskId: string) => subject(`parallelic.task.${taskId}.notified`, TaskNotified);
/** Wildcard for every task's notified events. */
export const taskNotifiedAll = subject("parallelic.task.*.notified", TaskNotified);

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
  /** Share of the machine's CPU time busy since the last heartbeat, 0 to 1 (absent from older nodes). */
  cpuBusy: z.number().min(0).max(1).optional(),
  /** Memory in use on the machine (total minus available), bytes (absent from older nodes). */
  memoryUsedBytes: z.number().int().nonnegative().optional(),
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

/** One point of a node's use over time: the heartbeats of a span (`spanMs`) folded into one. */
export const UsageSample = z.object({
  /** Start of the span, ms. */
  at: z.number(),
  /** Mean share of CPU time busy, 0 to 1; null when the node did not say. */
  cpuBusy: z.number().nullable(),
  /** Most memory in use, bytes; null when the node did not say. */
  memoryUsedBytes: z.number().nullable(),
  /** Most slots in use. */
  usedSlots: z.number().int().nonnegative(),
});
/** A usage sample. */
export type UsageSample = z.infer<typeof UsageSample>;
/** `GET /api/v1/nodes/{name}/usage`: a node's recent use, oldest first, with what to scale it by. */
export const NodeUsageView = z.object({
  name: NodeName,
  spanMs: z.number().int().positive(),
  slots: z.number().int().positive(),
  memoryBytes: z.number().int().nonnegative(),
  samples: z.array(UsageSample),
});
/** A node's recent use. */
export type NodeUsageView = z.infer<typeof NodeUsageView>;
/** `parallelic.nodes.usage`: a node's samples of the last `minutes`. */
export const nodesUsage = request(
  "parallelic.nodes.usage",
  z.object({ name: NodeName, minutes: z.number().int().positive() }),
  replyOf({ usage: NodeUsageView }),
);

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

/**
 * The run specs that passed {@linkcode RunSpec} once. A live task's is made
 * once and never changed (`liveOf` in `actors/task/state.ts`), and goes out
 * with each of its assignments: most of what checking one costs.
 */
const checkedRuns = new WeakSet<object>();
/** {@linkcode Assignment} as the task actor checks it before sending: each run spec object in full, once. */
const SentAssignment = z.object({
  tasks: z.array(z.object({
    taskId: TaskId,
    digest: Digest,
    run: z.custom<RunSpec>((run) => {
      if (typeof run !== "object" || run === null) return false;
      if (!checkedRuns.has(run)) checkedRuns.add(RunSpec.parse(run) && run);
      return true;
    }),
    items: z.array(AssignItem),
  })),
});
/** `parallelic.node.<name>.assign` */
export const nodeAssign = (name: string): Subject<typeof Assignment> => ({
  subject: `parallelic.node.${name}.assign`,
  schema: Assignment,
  sendSchema: SentAssignment,
});

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
  /** It stored no outputs but wrote files in its workdir: which, and the fix (see `node/output_hint.ts`). */
  hint: z.string().max(MAX_HINT_CHARS).optional(),
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
/** Every log subject: what the LOGS stream keeps. */
export const logSubjectsAll = "parallelic.log.>";
