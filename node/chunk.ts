/**
 * Chunks (`[task] chunk`): consecutive instances of a task run in one
 * process. It learns which from `PARALLELIC_INSTANCE` (the first),
 * `PARALLELIC_INSTANCE_LAST`, `PARALLELIC_PARAM_<KEY>_LAST` and the file
 * `PARALLELIC_CHUNK` (one JSON line per instance: index and params); what
 * it leaves in `$PARALLELIC_OUTPUT/<index>/` is stored as the outputs of
 * instance `index`.
 *
 * @module
 */
import { join } from "node:path";
import { inputParams, type InputRows } from "../core/inputs.ts";
import type { ObjectAccess } from "../core/objects.ts";
import type { InstanceRef, ParamValue, RunSpec } from "../core/schema.ts";
import { matrixParams } from "../core/task_toml.ts";
import { collectOutputs, isEmptyDir, storeOutputs } from "./outputs.ts";

/** An instance's parameters: its matrix values, or its row of `[task] inputs`. */
function paramsOf(run: RunSpec, rows: InputRows | null, index: number): Record<string, ParamValue> {
  return rows ? inputParams(rows, index) : matrixParams(run, index);
}

/**
 * Prepares a chunk's process: writes its `PARALLELIC_CHUNK` file at `file`,
 * makes an output folder per instance under `outputDir` (owned by `owner`
 * when the instance runs as another user), and returns the
 * variables to add to its environment.
 */
export async function prepareChunk(
  run: RunSpec,
  refs: readonly InstanceRef[],
  rows: InputRows | null,
  file: string,
  outputDir: string,
  owner: { uid: number; gid: number } | null,
): Promise<Record<string, string>> {
  const last = refs[refs.length - 1].index;
  const env: Record<string, string> = {
    PARALLELIC_INSTANCE_LAST: String(last),
    PARALLELIC_CHUNK: file,
  };
  for (const [k, v] of Object.entries(matrixParams(run, last))) {
    env[`PARALLELIC_PARAM_${k.toUpperCase()}_LAST`] = String(v);
  }
  const lines = refs.map((r) => JSON.stringify({ index: r.index, params: paramsOf(run, rows, r.index) }) + "\n");
  await Deno.writeTextFile(file, lines.join(""), { mode: 0o644 });
  for (const r of refs) {
    const dir = join(outputDir, String(r.index));
    await Deno.mkdir(dir, { recursive: true });
    // The instance runs as another user with --run-as: its folders are its own, like PARALLELIC_OUTPUT.
    if (owner) await Deno.chown(dir, owner.uid, owner.gid);
  }
  return env;
}

/**
 * Stores what a chunk left in `$PARALLELIC_OUTPUT/<index>/` as each of its
 * instances' outputs (only files owned by `ownerUid`, when it ran as another
 * user, as for any instance); returns the bytes stored per instance, in order.
 */
export async function storeChunkOutputs(
  bucket: () => Promise<ObjectAccess>,
  refs: readonly InstanceRef[],
  outputDir: string,
  ownerUid?: number,
): Promise<number[]> {
  const stored: number[] = [];
  for (const r of refs) {
    const dir = join(outputDir, String(r.index));
    // The usual case, answered without a walk or a lookup: a first attempt that left nothing.
    if (r.attempt === 0 && isEmptyDir(dir)) {
      stored.push(0);
      continue;
    }
    stored.push(
      await storeOutputs(await bucket(), r.taskId, r.index, r.attempt, await collectOutputs(dir, dir, [], ownerUid)),
    );
  }
  return stored;
}
