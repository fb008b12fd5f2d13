/**
 * The task as the manager and nodes understand it once task.toml was parsed
 * and checked (`core/task_toml.ts` makes it): {@linkcode TaskSpec}, and the
 * part of it a node needs to run instances, {@linkcode RunSpec}.
 *
 * @module
 */
import { z } from "zod";
import { DataSetName, ParamValue, TaskId } from "./ids.ts";

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

/** Task states a `[notify]` webhook can be told of. */
export const NotifyOn = z.enum(["failed", "succeeded", "cancelled"]);
/** A task state a webhook can be told of. */
export type NotifyOn = z.infer<typeof NotifyOn>;

/** `[notify]`: a webhook the manager POSTs a signed summary to when the task ends in a state of `on`. */
export const NotifySpec = z.object({ url: z.string(), on: z.array(NotifyOn) });
/** A task's webhook. */
export type NotifySpec = z.infer<typeof NotifySpec>;

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
  /** `[notify]`: the webhook told when the task ends (see `core/notify.ts`); null: none. */
  notify: NotifySpec.nullable().default(null),
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
