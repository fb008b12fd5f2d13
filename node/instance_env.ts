/**
 * What an instance's environment holds, decided here: the few variables of
 * the node's own it passes on (for the user it runs as), the task's `[env]`,
 * its data and outputs, and every `PARALLELIC_*` variable of its contract
 * but those of `[task] inputs` and chunks (see `core/inputs.ts`, `chunk.ts`).
 *
 * @module
 */
import type { InstanceRef, RunSpec } from "../core/schema.ts";
import { matrixParams } from "../core/task_toml.ts";
import { type RunAs, userEnv } from "./run_as.ts";

/** Variables of the node's environment an instance gets. */
const PASS_ENV = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL"];

/** The node's variables an instance gets, as they are for `--run-as`'s user (or the node's, without one). */
export function baseEnv(runAs: RunAs | null): Record<string, string> {
  const env: Record<string, string> = {};
  for (const k of PASS_ENV) {
    const v = Deno.env.get(k);
    if (v !== undefined) env[k] = v;
  }
  return runAs ? userEnv(runAs, env) : env;
}

/** An instance's environment (before the rows of `[task] inputs` and a chunk's variables are added). */
export function instanceEnv(at: {
  /** From {@linkcode baseEnv}. */
  base: Record<string, string>;
  /** The user it runs as, when not the node's. */
  user: RunAs | null;
  /** `--run-as`'s user, whose variables `base` holds already. */
  runAs: RunAs | null;
  ref: InstanceRef;
  run: RunSpec;
  /** Its data sets' and outputs' variables (see `instance_io.ts`). */
  ioEnv: Record<string, string>;
  /** The node's name. */
  node: string;
  /** Its run dir, the task root. */
  dir: string;
}): Record<string, string> {
  const { user, ref, run } = at;
  const env: Record<string, string> = {
    ...(user && user !== at.runAs ? userEnv(user, at.base) : at.base),
    ...run.env,
    ...at.ioEnv,
  };
  env.PARALLELIC_TASK_ID = ref.taskId;
  env.PARALLELIC_INSTANCE = String(ref.index);
  env.PARALLELIC_INSTANCES = String(run.instances);
  env.PARALLELIC_ATTEMPT = String(ref.attempt);
  env.PARALLELIC_NODE = at.node;
  env.PARALLELIC_TASK_ROOT = at.dir;
  for (const [k, v] of Object.entries(matrixParams(run, ref.index))) {
    env[`PARALLELIC_PARAM_${k.toUpperCase()}`] = String(v);
  }
  return env;
}
