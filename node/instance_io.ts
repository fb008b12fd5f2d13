/**
 * What an instance reads and writes beyond its copy of the task root: a
 * read-only view of each data set its task names (`PARALLELIC_DATA_<KEY>`),
 * an output folder (`PARALLELIC_OUTPUT`) stored in the task's workspace when
 * it ends, and, for the `[finalize]` run, the whole workspace read-only
 * (`PARALLELIC_WORKSPACE`).
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../core/log.ts";
import type { ObjectAccess } from "../core/objects.ts";
import type { DataVersion, InstanceRef, RunSpec } from "../core/schema.ts";
import type { DataCache, DataLease } from "./data_cache.ts";
import { lockTree, removeTree } from "./readonly.ts";
import { collectOutputs, fetchWorkspace, isEmptyDir, storeOutputs } from "./outputs.ts";
import type { UpstreamCache } from "./upstream.ts";

/** What {@linkcode prepareInstanceIo} needs from the node. */
export interface InstanceIoContext {
  data: DataCache;
  /** Opens the workspace bucket. */
  workspace: () => Promise<ObjectAccess>;
  /** Upstream workspaces of `[after]` tasks; absent where none can be read. */
  upstream?: UpstreamCache;
  log: Logger;
}

/** An instance's data views, output folder and (for finalize) workspace. */
export interface InstanceIo {
  /** True for the `[finalize]` run. */
  finalize: boolean;
  /** What to run, relative to the task root; null for a shell command. */
  entrypoint: string | null;
  /** The shell command line to run with `/bin/sh -c`, when there is no entrypoint. */
  command: string | null;
  /** Its arguments. */
  args: string[];
  /** Variables to add to the instance's environment. */
  env: Record<string, string>;
  /** Stores the outputs in the task's workspace; returns the bytes stored. */
  storeOutputs(): Promise<number>;
  /** Releases the data views and removes the finalize workspace folder. */
  cleanup(): Promise<void>;
}

/**
 * Prepares the instance running in `dir` (its copy of the task root), with
 * `outputDir` (an empty folder) for its outputs, both owned by `ownerUid`
 * when it runs as another user: fetches (once per node) the
 * data sets it names, and for finalize fetches the workspace. Call
 * `cleanup()` in every case.
 */
export async function prepareInstanceIo(
  ctx: InstanceIoContext,
  ref: InstanceRef,
  run: RunSpec,
  dir: string,
  outputDir: string,
  ownerUid?: number,
): Promise<InstanceIo> {
  const finalize = run.finalize !== null && ref.index === run.instances;
  const env: Record<string, string> = {};
  const leases: DataLease[] = [];
  const workspaceDir = `${dir}.ws`;
  const upstreamDir = `${dir}.up`;
  const upstream = run.upstream ?? [];
  const cleanup = async () => {
    for (const lease of leases.splice(0)) lease.release();
    if (finalize) await removeTree(workspaceDir);
    if (upstream.length > 0) await removeTree(upstreamDir);
  };
  try {
    const acquired = await Promise.allSettled(
      Object.entries(run.data).map(async ([key, { name, version }]) => {
        const lease = await ctx.data.acquire(name, version as DataVersion);
        leases.push(lease);
        env[`PARALLELIC_DATA_${key.toUpperCase()}`] = lease.path;
      }),
    );
    const failed = acquired.find((r) => r.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;
    env.PARALLELIC_OUTPUT = outputDir;
    if (upstream.length > 0) {
      if (!ctx.upstream) throw new Error("this node cannot read upstream workspaces");
      // A folder of its own, holding a link to each upstream's read-only copy: it sees only its own upstreams.
      await Deno.mkdir(upstreamDir, { recursive: true });
      for (const ref of upstream) await Deno.symlink(await ctx.upstream.acquire(ref), join(upstreamDir, ref.taskId));
      env.PARALLELIC_UPSTREAM = upstreamDir;
    }
    if (finalize) {
      const files = await fetchWorkspace(await ctx.workspace(), ref.taskId, run.instances, workspaceDir);
      await lockTree(workspaceDir, ctx.log);
      env.PARALLELIC_WORKSPACE = workspaceDir;
      env.PARALLELIC_FINALIZE = "1";
      ctx.log.info("node:workspace-fetched", { taskId: ref.taskId, files });
      // The copy of the task root is private to this run: make sure finalize's entrypoint can run.
      if (run.finalize!.entrypoint !== null) await Deno.chmod(join(dir, run.finalize!.entrypoint), 0o755);
    }
  } catch (e) {
    await cleanup();
    throw e;
  }
  return {
    finalize,
    entrypoint: finalize ? run.finalize!.entrypoint : run.entrypoint,
    command: finalize ? run.finalize!.command ?? null : run.command ?? null,
    args: finalize ? run.finalize!.args : run.args,
    env,
    async storeOutputs() {
      // The usual case, answered without a walk: a first attempt with no globs that left no output.
      if (ref.attempt === 0 && run.outputs.length === 0 && isEmptyDir(outputDir)) return 0;
      const sources = await collectOutputs(outputDir, join(dir, run.workdir), run.outputs, ownerUid);
      return await storeOutputs(
        await ctx.workspace(),
        ref.taskId,
        finalize ? "finalize" : ref.index,
        ref.attempt,
        sources,
      );
    },
    cleanup,
  };
}
