/**
 * Upstream workspaces (`[after]`): the outputs of a task another waits for,
 * fetched once per node like a data set, kept read-only, and shown to each
 * instance of its dependents as `$PARALLELIC_UPSTREAM/<task id>/<index>/…`
 * (and `<task id>/finalize/…`).
 *
 * The objects are read from the workspace bucket here. Reads of another
 * task's outputs must be authorized: where a node may read only the outputs
 * of tasks it is assigned, the manager authorizes these reads for the tasks
 * named in the `upstream` of an assigned task's run spec (see
 * {@linkcode UpstreamCache.acquire}).
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../core/log.ts";
import type { ObjectAccess } from "../core/objects.ts";
import { outputObject, type UpstreamRef } from "../core/schema.ts";
import { extractTar } from "../core/tar.ts";
import { fetchWorkspace } from "./outputs.ts";
import { lockTree, removeTree } from "./readonly.ts";

/** The node's copies of upstream workspaces. */
export interface UpstreamCache {
  /**
   * Returns the read-only folder holding the workspace of `ref`, fetching it
   * once. The hook for authorized reads: every object fetched belongs to
   * `ref.taskId`, a task named in the `[after]` of the task being run.
   */
  acquire(ref: UpstreamRef): Promise<string>;
}

/** Creates the cache under `dir`, reading from `workspace()`. */
export function createUpstreamCache(dir: string, workspace: () => Promise<ObjectAccess>, log: Logger): UpstreamCache {
  const pending = new Map<string, Promise<string>>();
  const fetch = async (ref: UpstreamRef): Promise<string> => {
    const root = join(dir, ref.taskId);
    try {
      await Deno.stat(`${root}.ok`);
      return root;
    } catch { /* not here yet */ }
    const tmp = `${root}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      const bucket = await workspace();
      let files = await fetchWorkspace(bucket, ref.taskId, ref.instances, tmp);
      if (ref.finalize) {
        const read = await bucket.read(outputObject(ref.taskId, "finalize"));
        if (read) files += (await extractTar(read.body, join(tmp, "finalize"), "outputs of finalize")).files;
      }
      await removeTree(root);
      await Deno.rename(tmp, root);
      // Locked where it stays: an immutable tree (chattr +i, as root) cannot be renamed.
      await lockTree(root, log);
      await Deno.writeTextFile(`${root}.ok`, "");
      log.info("node:upstream-fetched", { taskId: ref.taskId, files });
      return root;
    } catch (e) {
      await removeTree(tmp).catch(() => {});
      throw e;
    }
  };
  return {
    acquire(ref) {
      let p = pending.get(ref.taskId);
      if (!p) {
        pending.set(ref.taskId, p = fetch(ref));
        p.catch(() => pending.delete(ref.taskId));
      }
      return p;
    },
  };
}
