/**
 * Upstream workspaces (`[after]`): the outputs of a task another waits for,
 * fetched once per node like a data set, kept read-only under a name nobody
 * can guess in a folder nobody can list, and shown to each instance of its
 * dependents as `$PARALLELIC_UPSTREAM/<task id>/<index>/…` (and
 * `<task id>/finalize/…`), a link in a folder of its own.
 *
 * The objects are read through the manager's object service, which lets a
 * node read a task's outputs only while it holds an instance or the finalize
 * of a task naming it in `upstream` (see `actors/object_service.ts`).
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
   * once: every object fetched belongs to `ref.taskId`, a task named in the
   * `[after]` of the task being run.
   */
  acquire(ref: UpstreamRef): Promise<string>;
}

/** Creates the cache under `dir`, reading from `workspace()`. */
export function createUpstreamCache(dir: string, workspace: () => Promise<ObjectAccess>, log: Logger): UpstreamCache {
  const pending = new Map<string, Promise<string>>();
  // Emptied once per node start: copies are found through `pending` only, under names nobody else can guess.
  let ready: Promise<void> | undefined;
  const prepare = async () => {
    await removeTree(dir);
    await Deno.mkdir(dir, { recursive: true });
    // Passable, not listable: an instance reaches only the copies linked into its own `PARALLELIC_UPSTREAM`.
    await Deno.chmod(dir, 0o711);
  };
  const fetch = async (ref: UpstreamRef): Promise<string> => {
    await (ready ??= prepare().catch((e) => {
      ready = undefined;
      throw e;
    }));
    const root = join(dir, `${ref.taskId}-${crypto.randomUUID()}`);
    const tmp = `${root}.tmp`;
    try {
      const bucket = await workspace();
      let files = await fetchWorkspace(bucket, ref.taskId, ref.instances, tmp);
      if (ref.finalize) {
        const read = await bucket.read(outputObject(ref.taskId, "finalize"));
        if (read) files += (await extractTar(read.body, join(tmp, "finalize"), "outputs of finalize")).files;
      }
      await Deno.rename(tmp, root);
      // Locked where it stays: an immutable tree (chattr +i, as root) cannot be renamed.
      await lockTree(root, log);
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
