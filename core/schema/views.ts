/**
 * What the HTTP API answers: tasks, instances, data sets, storage, submits,
 * package checks, instance states, heartbeats and users as clients see them.
 *
 * @module
 */
import { z } from "zod";
import { DataSetName, Digest, NodeName, ParamValue, State, TaskId } from "./ids.ts";
import { ErrorBody } from "./messages.ts";
import { Attempt, DataVersionRecord, NotifyView, TaskRecord, type UserRecord } from "./records.ts";
import { TaskSpec } from "./task_spec.ts";

/** `GET /api/v1/tasks/{id}` */
export const TaskView = TaskRecord.omit({ nextIndex: true }).extend({
  instances: z.number().int(),
  /** `[notify]` and how its notification went (`GET /api/v1/tasks/{id}` only; null: no webhook). */
  notify: NotifyView.nullable().optional(),
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
