/**
 * The raw shape of task.toml as zod checks it ({@linkcode TaskToml}), strict
 * at every level, and the limits it enforces. `core/task_toml.ts` turns what
 * passes into a checked `TaskSpec`.
 *
 * @module
 */
import { z } from "zod";
import { notifyUrlProblem } from "./notify.ts";
import { NotifyOn } from "./schema.ts";
import { parseBytes, parseDurationMs } from "./task_toml_values.ts";

/** Largest task.toml accepted, in bytes. */
export const MAX_TASK_TOML_BYTES = 64 * 1024;
/** Most instances one task may have. */
export const MAX_INSTANCES = 1_000_000;
/** Most instances one process may run (`[task] chunk`). */
export const MAX_CHUNK = 10_000;
/** Most tasks one task may wait for (`[after] tasks`). */
export const MAX_AFTER = 32;
/** Most data sets one task may name in `[data]`. */
export const MAX_DATA_SETS = 64;

const Size = z.union([z.string(), z.number().int().nonnegative()]).transform((v, ctx) => {
  try {
    const bytes = parseBytes(v);
    if (!Number.isSafeInteger(bytes)) throw new Error(`'${v}' is more bytes than anyone has`);
    return bytes;
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

const Duration = z.union([z.string(), z.number().positive()]).transform((v, ctx) => {
  try {
    const ms = parseDurationMs(v);
    if (ms < 1) throw new Error(`'${v}' is not longer than 0 ms`);
    if (ms > 366 * 86_400_000) throw new Error(`'${v}' is longer than a year`);
    return ms;
  } catch (e) {
    ctx.addIssue({ code: "custom", message: (e as Error).message });
    return z.NEVER;
  }
});

/** Longest `command`, in characters. */
export const MAX_COMMAND_CHARS = 16 * 1024;

const ShellCommand = z.string().min(1).max(MAX_COMMAND_CHARS).refine(
  (v) => !v.includes("\0"),
  "a command cannot hold a NUL character",
);

/** A name an environment variable may have. */
export const EnvName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/);

const MatrixAxis = z.union([
  z.array(z.union([z.string(), z.number(), z.boolean()])).min(1),
  z.strictObject({
    from: z.number().int(),
    to: z.number().int(),
    step: z.number().int().positive().optional(),
  }),
]);

/** A `[data]` value: `NAME`, or `NAME@sha256:<hex>` (a full version or a prefix of at least 8 hex digits). */
export const DATA_REF = /^([A-Za-z0-9][A-Za-z0-9._-]{0,63})(?:@(sha256:[0-9a-f]{8,64}))?$/;

/** The raw shape of task.toml, strict at every level. */
export const TaskToml = z.strictObject({
  task: z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._ -]{0,63}$/).optional(),
    entrypoint: z.string().min(1).optional(),
    command: ShellCommand.optional(),
    workdir: z.string().min(1).optional(),
    args: z.array(z.string()).optional(),
    instances: z.number().int().min(1).max(MAX_INSTANCES).optional(),
    inputs: z.string().min(1).optional(),
    chunk: z.number().int().min(1).max(MAX_CHUNK).optional(),
    matrix: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), MatrixAxis).optional(),
  }),
  env: z.record(EnvName, z.string()).optional(),
  resources: z.strictObject({
    cpus: z.number().int().min(1).max(1024).optional(),
    memory: Size.optional(),
    gpus: z.number().int().min(0).max(64).optional(),
  }).optional(),
  placement: z.strictObject({
    labels: z.record(z.string(), z.string()).optional(),
  }).optional(),
  limits: z.strictObject({
    timeout: Duration.optional(),
    retries: z.number().int().min(0).max(100).optional(),
    priority: z.number().int().min(0).max(100).optional(),
    max_running: z.number().int().min(1).max(MAX_INSTANCES).optional(),
  }).optional(),
  data: z.record(
    EnvName,
    z.string().regex(DATA_REF, 'a data set is "NAME" or "NAME@sha256:<hex>" (at least 8 hex digits)'),
  ).refine((sets) => Object.keys(sets).length <= MAX_DATA_SETS, `at most ${MAX_DATA_SETS} data sets`).optional(),
  outputs: z.strictObject({
    paths: z.array(z.string().min(1)).max(100),
  }).optional(),
  after: z.strictObject({
    tasks: z.array(z.string().regex(/^t[0-9a-z]{16}$/, "a task id is 't' and 16 of 0-9 a-z")).min(1).max(MAX_AFTER),
    when: z.enum(["succeeded", "ended"]).optional(),
  }).optional(),
  finalize: z.strictObject({
    entrypoint: z.string().min(1).optional(),
    command: ShellCommand.optional(),
    args: z.array(z.string()).optional(),
  }).optional(),
  notify: z.strictObject({
    url: z.string().superRefine((v, ctx) => {
      const problem = notifyUrlProblem(v);
      if (problem) ctx.addIssue({ code: "custom", message: problem });
    }),
    on: z.array(NotifyOn).min(1).max(NotifyOn.options.length).optional(),
  }).optional(),
});
