/**
 * Parsing and checking `task.toml`. Strict: an unknown key, a wrong type, a
 * missing entrypoint (or command) or a path leaving the task root is
 * rejected, and the message names the key, the value and the line. The raw
 * shape and its limits are `core/task_toml_schema.ts`; sizes, durations and
 * relative paths `core/task_toml_values.ts`.
 *
 * @module
 */
import { parse, TomlError } from "smol-toml";
import type { z } from "zod";
import { ValidationError } from "./errors.ts";
import { inputsFormat } from "./inputs.ts";
import { DEFAULT_NOTIFY_ON } from "./notify.ts";
import { mergeOverrides, parseOverrides } from "./overrides.ts";
import { type ParamValue, TaskSpec } from "./schema.ts";
import { DATA_REF, EnvName, MAX_INSTANCES, MAX_TASK_TOML_BYTES, TaskToml } from "./task_toml_schema.ts";
import { normalizeRelative } from "./task_toml_values.ts";

export {
  DATA_REF,
  MAX_AFTER,
  MAX_CHUNK,
  MAX_COMMAND_CHARS,
  MAX_DATA_SETS,
  MAX_INSTANCES,
  MAX_TASK_TOML_BYTES,
  TaskToml,
} from "./task_toml_schema.ts";
export { normalizeRelative, parseBytes, parseDurationMs } from "./task_toml_values.ts";

/**
 * Finds the line of `path` (like `["task", "entrypoint"]`) in TOML source:
 * the line where its key is assigned under the right table header, or the
 * table header itself. Returns 0 when it cannot tell.
 */
export function lineOf(source: string, path: readonly PropertyKey[]): number {
  const lines = source.split("\n");
  const keys = path.filter((p): p is string => typeof p === "string");
  if (keys.length === 0) return 0;
  let table: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const text = lines[i].trim();
    const header = /^\[\s*([^\]]+?)\s*\]/.exec(text);
    if (header) {
      table = header[1].split(".").map((s) => s.trim().replace(/^"|"$/g, ""));
      if (table.join(".") === keys.join(".")) return i + 1;
      continue;
    }
    const assign = /^("?)([A-Za-z0-9_.-]+)\1\s*=/.exec(text);
    if (!assign) continue;
    const full = [...table, ...assign[2].split(".")];
    // The key itself, or an inline table that contains it.
    const n = Math.min(full.length, keys.length);
    if (full.slice(0, n).join(".") === keys.slice(0, n).join(".")) return i + 1;
  }
  return keys.length > 1 ? lineOf(source, keys.slice(0, -1)) : 0;
}

function describe(value: unknown): string {
  const text = JSON.stringify(value);
  if (text === undefined) return String(value);
  return text.length > 60 ? text.slice(0, 57) + "..." : text;
}

function valueAt(data: unknown, path: readonly PropertyKey[]): unknown {
  let cur: unknown = data;
  for (const p of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<PropertyKey, unknown>)[p];
  }
  return cur;
}

/** Where {@linkcode fail} says a key came from the overrides, not a line of task.toml. */
const IN_OVERRIDES = -1;

function fail(message: string, line: number, code = "invalid_task_toml"): never {
  const where = line === IN_OVERRIDES ? " overrides" : line ? ` line ${line}` : "";
  throw new ValidationError(`task.toml${where}: ${message}`, { code });
}

/** Where a key of task.toml is, to name it in an error; and the check of a path inside the task root. */
interface Where {
  /** The text of task.toml. */
  source: string;
  /** The line of a key (or {@linkcode IN_OVERRIDES}). */
  at(path: readonly PropertyKey[]): number;
  /** The normalized path at `key`, which must stay inside the task root (and name more than it, unless `root`). */
  inside(key: string[], value: string, root?: boolean): string;
}

/** task.toml as zod checked it. */
type Toml = z.infer<typeof TaskToml>;

/**
 * Parses and checks task.toml text into a {@linkcode TaskSpec}.
 *
 * @param source The text of task.toml.
 * @param defaultName The name used when `[task] name` is absent (the folder or zip name).
 * @param overrides A TOML fragment laid over task.toml first (see `core/overrides.ts`).
 * @throws {ValidationError} Naming the key, the value and the line.
 */
export function parseTaskToml(source: string, defaultName = "task", overrides?: string): TaskSpec {
  if (source.length > MAX_TASK_TOML_BYTES) {
    fail(`is ${source.length} bytes, more than the limit of ${MAX_TASK_TOML_BYTES}`, 0, "task_toml_too_large");
  }
  let data: unknown;
  try {
    data = parse(source);
  } catch (e) {
    if (e instanceof TomlError) {
      fail(`is not valid TOML: ${e.message.split("\n")[0]}`, e.line);
    }
    throw e;
  }
  // Laid over before the checks: a key the overrides give is checked (and named) like one of task.toml.
  const extra = overrides === undefined ? undefined : parseOverrides(overrides);
  if (extra) data = mergeOverrides(data as Record<string, unknown>, extra);
  const at = (path: readonly PropertyKey[]) =>
    extra && valueAt(extra, path) !== undefined ? IN_OVERRIDES : lineOf(source, path);
  const parsed = TaskToml.safeParse(data);
  if (!parsed.success) failOnIssue(parsed.error.issues[0], data, at);
  const toml = parsed.data;
  const where: Where = {
    source,
    at,
    inside: (key, value, root = false) => {
      const normal = normalizeRelative(value);
      if (normal === null || (normal === "." && !root)) {
        fail(
          `key '${key.join(".")}' = ${describe(value)} leaves the task root`,
          at(key),
          "path_escapes_root",
        );
      }
      return normal;
    },
  };
  const { entrypoint, command, args } = programOf(where, "task", toml.task);
  const workdir = where.inside(["task", "workdir"], toml.task.workdir ?? ".", true);
  const { matrix, paramNames } = matrixOf(where, toml);
  let instances = toml.task.instances ?? 1;
  if (matrix.length > 0) {
    if (toml.task.instances !== undefined) {
      fail(
        "keys 'task.instances' and 'task.matrix' exclude each other: the matrix sets the number of instances",
        at(["task", "instances"]),
      );
    }
    instances = matrix.reduce((n, axis) => n * axis.values.length, 1);
    if (instances > MAX_INSTANCES) {
      fail(
        `'task.matrix' makes ${instances} instances, more than the limit of ${MAX_INSTANCES}`,
        at(["task", "matrix"]),
      );
    }
  }
  const chunk = toml.task.chunk ?? 1;
  if (chunk > 1) checkChunk(where, toml, paramNames);
  const inputs = inputsOf(where, toml);
  for (const key of Object.keys(toml.env ?? {})) {
    if (key.startsWith("PARALLELIC_")) {
      fail(
        `key 'env.${key}': names starting with PARALLELIC_ are set by Parallelic`,
        at(["env", key]),
      );
    }
  }
  const dataSets = dataOf(where, toml);
  const outputs = outputsOf(where, toml);
  const finalize: TaskSpec["finalize"] = toml.finalize ? programOf(where, "finalize", toml.finalize) : null;
  const spec = {
    name: toml.task.name ?? defaultName,
    entrypoint,
    command,
    workdir,
    args,
    instances,
    matrix,
    inputs,
    chunk,
    env: toml.env ?? {},
    cpus: toml.resources?.cpus ?? 1,
    memoryBytes: toml.resources?.memory ?? 0,
    gpus: toml.resources?.gpus ?? 0,
    labels: toml.placement?.labels ?? {},
    timeoutMs: toml.limits?.timeout ?? null,
    retries: toml.limits?.retries ?? 0,
    priority: toml.limits?.priority ?? 50,
    maxRunning: toml.limits?.max_running ?? null,
    data: dataSets,
    outputs,
    after: toml.after ? { tasks: [...new Set(toml.after.tasks)], when: toml.after.when ?? "succeeded" } : null,
    finalize,
    notify: toml.notify ? { url: toml.notify.url, on: [...new Set(toml.notify.on ?? DEFAULT_NOTIFY_ON)] } : null,
  };
  // The last word: whatever passed the checks above must be a valid TaskSpec that nodes will run.
  const checked = TaskSpec.safeParse(spec);
  if (!checked.success) {
    const issue = checked.error.issues[0];
    fail(`'${issue.path.join(".")}' is invalid: ${issue.message}`, 0);
  }
  const problem = runSpecProblem(checked.data);
  if (problem) fail(problem, 0, "path_escapes_root");
  return checked.data;
}

/** Says what the first issue zod found with task.toml is: an unknown key, a missing one, or a wrong value. */
function failOnIssue(issue: z.core.$ZodIssue, data: unknown, at: Where["at"]): never {
  if (issue.code === "unrecognized_keys") {
    const key = issue.keys[0];
    const path = [...issue.path, key];
    fail(
      `unknown key '${path.join(".")}'${issue.keys.length > 1 ? ` (and ${issue.keys.slice(1).join(", ")})` : ""}`,
      at(path),
      "unknown_key",
    );
  }
  const key = issue.path.join(".");
  const value = valueAt(data, issue.path);
  if (value === undefined && issue.code === "invalid_type") {
    fail(`missing required key '${key}'`, at(issue.path.slice(0, -1)), "missing_key");
  }
  fail(`key '${key}' = ${describe(value)}: ${issue.message}`, at(issue.path));
}

/** Exactly one of `entrypoint` and `command` in `table`; `args` go with an entrypoint only. */
function programOf(
  where: Where,
  table: "task" | "finalize",
  t: { entrypoint?: string; command?: string; args?: string[] },
) {
  const { source } = where;
  if (t.entrypoint !== undefined && t.command !== undefined) {
    fail(
      `keys '${table}.entrypoint' and '${table}.command' exclude each other: give a file to run or a shell command`,
      lineOf(source, [table, "command"]),
    );
  }
  if (t.entrypoint === undefined && t.command === undefined) {
    fail(
      `missing key '${table}.entrypoint' (a file in the package to run) or '${table}.command' (a shell command line)`,
      lineOf(source, [table]),
      "missing_key",
    );
  }
  if (t.command !== undefined && t.args !== undefined) {
    fail(
      `key '${table}.args' goes with '${table}.entrypoint' only: write the arguments into '${table}.command'`,
      lineOf(source, [table, "args"]),
    );
  }
  return {
    entrypoint: t.entrypoint === undefined ? null : where.inside([table, "entrypoint"], t.entrypoint),
    command: t.command ?? null,
    args: t.args ?? [],
  };
}

/** `[task] matrix`: its axes, in order, and which key names each `PARALLELIC_PARAM_<KEY>`. */
function matrixOf(where: Where, toml: Toml): { matrix: TaskSpec["matrix"]; paramNames: Map<string, string> } {
  const paramNames = new Map<string, string>();
  const matrix = Object.entries(toml.task.matrix ?? {}).map(([name, axis]) => {
    const env = name.toUpperCase();
    if (paramNames.has(env)) {
      fail(
        `keys 'task.matrix.${paramNames.get(env)}' and 'task.matrix.${name}' both name PARALLELIC_PARAM_${env}: ` +
          "rename one of them",
        lineOf(where.source, ["task", "matrix", name]),
      );
    }
    paramNames.set(env, name);
    if (Array.isArray(axis)) return { name, values: axis as ParamValue[] };
    const step = axis.step ?? 1;
    if (axis.to < axis.from || (axis.to - axis.from) / step + 1 > MAX_INSTANCES) {
      fail(
        `key 'task.matrix.${name}' = ${
          describe(axis)
        }: 'to' must be at least 'from' and the range at most ${MAX_INSTANCES} values`,
        where.at(["task", "matrix", name]),
      );
    }
    const values: number[] = [];
    for (let v = axis.from; v <= axis.to; v += step) values.push(v);
    return { name, values };
  });
  return { matrix, paramNames };
}

/** `[task] chunk` over 1: no matrix key may clash with another's `_LAST` variable, and no `[outputs]`. */
function checkChunk(where: Where, toml: Toml, paramNames: Map<string, string>): void {
  const { source } = where;
  // A chunk's process also gets PARALLELIC_PARAM_<KEY>_LAST for every matrix key.
  for (const key of paramNames.keys()) {
    if (paramNames.has(`${key}_LAST`)) {
      fail(
        `keys 'task.matrix.${paramNames.get(key)}' and 'task.matrix.${paramNames.get(`${key}_LAST`)}' both name ` +
          `PARALLELIC_PARAM_${key}_LAST with 'task.chunk': rename one of them`,
        lineOf(source, ["task", "matrix", paramNames.get(`${key}_LAST`)!]),
      );
    }
  }
  if (toml.outputs?.paths) {
    fail(
      "key 'outputs.paths' cannot go with 'task.chunk': a chunk stores what it leaves in $PARALLELIC_OUTPUT/<index>/ " +
        "as the outputs of each instance",
      lineOf(source, ["outputs", "paths"]),
    );
  }
}

/** `[task] inputs`: its path and format, or null; it excludes `instances` and `matrix`. */
function inputsOf(where: Where, toml: Toml): TaskSpec["inputs"] {
  if (toml.task.inputs === undefined) return null;
  for (const other of ["instances", "matrix"] as const) {
    if (toml.task[other] !== undefined) {
      fail(
        `keys 'task.inputs' and 'task.${other}' exclude each other: the inputs file sets the number of instances`,
        lineOf(where.source, ["task", "inputs"]),
      );
    }
  }
  const path = where.inside(["task", "inputs"], toml.task.inputs);
  // The number of instances is the file's, counted when the package is checked.
  return { path, format: inputsFormat(path) };
}

/** `[data]`: each key's data set and version (a prefix or none, pinned at submit). */
function dataOf(where: Where, toml: Toml): TaskSpec["data"] {
  const dataSets: TaskSpec["data"] = {};
  const envNames = new Map<string, string>();
  for (const [key, ref] of Object.entries(toml.data ?? {})) {
    const env = key.toUpperCase();
    if (envNames.has(env)) {
      fail(
        `keys 'data.${envNames.get(env)}' and 'data.${key}' both name PARALLELIC_DATA_${env}`,
        where.at(["data", key]),
      );
    }
    envNames.set(env, key);
    const [, name, version] = DATA_REF.exec(ref)!;
    dataSets[key] = { name, version: version ?? null };
  }
  return dataSets;
}

/** `[outputs] paths`, normalized: each must stay inside the workdir. */
function outputsOf(where: Where, toml: Toml): string[] {
  return (toml.outputs?.paths ?? []).map((pattern, i) => {
    const normal = normalizeRelative(pattern);
    if (normal === null || normal === "." || pattern.split(/[\\/]/).includes("..")) {
      fail(
        `key 'outputs.paths' = ${describe(pattern)} (item ${i + 1}) leaves the workdir`,
        where.at(["outputs", "paths"]),
        "path_escapes_root",
      );
    }
    return normal;
  });
}

/**
 * What is wrong with a run spec, or null: the checks task.toml's paths and
 * names passed at the gateway, made again where a spec is about to run (a
 * node trusts no spec it is sent). Paths must be normalized and inside the
 * task root, outputs inside the workdir, env and data keys valid names.
 */
export function runSpecProblem(
  run: Pick<TaskSpec, "entrypoint" | "command" | "workdir" | "env" | "data" | "outputs" | "finalize"> & {
    inputs?: TaskSpec["inputs"];
  },
): string | null {
  const insideRoot = (what: string, path: string, root = false) =>
    normalizeRelative(path) === path && (root || path !== ".") && !path.split("/").includes("..")
      ? null
      : `${what} '${path}' leaves the task root`;
  // Exactly one of an entrypoint (checked to stay inside the root) and a command.
  const program = (what: string, p: { entrypoint: string | null; command: string | null }) =>
    (p.entrypoint === null) === (p.command === null)
      ? `${what} needs exactly one of entrypoint and command`
      : p.entrypoint === null
      ? null
      : insideRoot(what === "task" ? "entrypoint" : `${what} entrypoint`, p.entrypoint);
  const problems = [
    program("task", run),
    insideRoot("workdir", run.workdir, true),
    run.finalize ? program("finalize", run.finalize) : null,
    run.inputs ? insideRoot("inputs", run.inputs.path) : null,
    ...run.outputs.map((o) => insideRoot("output path", o)),
    ...Object.keys(run.env).map((k) =>
      !EnvName.safeParse(k).success || k.startsWith("PARALLELIC_")
        ? `env key '${k}' is not a name a task may set`
        : null
    ),
    ...Object.keys(run.data).map((k) => EnvName.safeParse(k).success ? null : `data key '${k}' is not a valid name`),
  ];
  return problems.find((p) => p !== null) ?? null;
}

/**
 * The matrix parameters of instance `index`: the mixed-radix digits of the
 * index, the last axis varying fastest. Nothing is materialized per instance.
 */
export function matrixParams(
  spec: Pick<TaskSpec, "matrix">,
  index: number,
): Record<string, ParamValue> {
  const params: Record<string, ParamValue> = {};
  let rest = index;
  for (let i = spec.matrix.length - 1; i >= 0; i--) {
    const axis = spec.matrix[i];
    params[axis.name] = axis.values[rest % axis.values.length];
    rest = Math.floor(rest / axis.values.length);
  }
  return params;
}
