/**
 * Who may reach which object, decided here for every call of the object
 * service (`actors/object_service.ts`) from what the node holds now:
 * - a package, when the node holds an instance of a task with that digest;
 * - a data set manifest or file content, when the node holds an instance of
 *   a task that names a version holding it;
 * - an instance's outputs (read, write, delete), when the node holds that
 *   instance; a write only with the attempt it holds;
 * - every output of a task, for reading, when the node holds its finalize;
 * - every output of a task (instances and finalize), for reading, when the
 *   node holds an instance or the finalize of a task that waits for it in
 *   `[after]` (its `upstream`).
 *
 * @module
 */
import { parseManifest } from "../core/data_manifest.ts";
import { AuthError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Bucket } from "../core/objects.ts";
import { dataManifestObject, type DataVersion } from "../core/schema.ts";
import type { ObjectBucketName } from "../core/subjects.ts";

/** A task a node holds at least one instance of now. */
export interface HeldTask {
  taskId: string;
  digest: string;
  /** Its instance count: finalize is instance `instances`. */
  instances: number;
  /** The data set versions it names. */
  dataVersions: string[];
  /** The ids of the tasks it waits for in `[after]`, whose outputs its instances read. */
  upstream: string[];
}

/** What the object service asks the task actor: the node's current assignments. */
export interface AssignmentView {
  /** The attempt of instance `index` of `taskId` that `node` holds now, or null. */
  attemptOf(node: string, taskId: string, index: number): number | null;
  /** The tasks `node` holds instances of now. */
  tasksOf(node: string): HeldTask[];
}

/** What the access rules need. */
export interface ObjectAccessDeps {
  log: Logger;
  /** The data bucket, where data set versions' manifests are. */
  data: () => Promise<Bucket>;
  assignments: AssignmentView;
  /** Told of every refused call (the manager audits them). */
  onRefused?: (node: string, what: string) => void;
}

/** The rules of {@linkcode createObjectAccess}: each throws an {@linkcode AuthError} when the call is refused. */
export interface ObjectAccess {
  /** Throws unless `node` may read `object` of `bucket` now. */
  mayRead(node: string, bucket: ObjectBucketName, object: string): Promise<void>;
  /** Throws unless `node` may write `object` of the workspace now (with `attempt`, when given). */
  mayWrite(node: string, bucket: ObjectBucketName, object: string, attempt?: number): void;
}

/** Data set versions whose file lists are kept, most recently used last. */
const MANIFESTS_KEPT = 256;

/** Creates the access rules of the object service. */
export function createObjectAccess(deps: ObjectAccessDeps): ObjectAccess {
  const { log, assignments } = deps;
  /** Content hashes of data set versions' files, by version (most recently used last). */
  const manifests = new Map<string, Promise<Set<string>>>();

  const refuse = (node: string, bucket: string, object: string, why: string): never => {
    const what = `${bucket}/${object}: ${why}`;
    log.warn("objects:refused", { node, what });
    deps.onRefused?.(node, what);
    throw new AuthError(`Node '${node}' may not reach object '${object}' of ${bucket}: ${why}`, {
      code: "object_forbidden",
    });
  };

  const filesOf = (version: string): Promise<Set<string>> => {
    let files = manifests.get(version);
    if (files) manifests.delete(version);
    else {
      files = (async () => {
        const read = await (await deps.data()).read(dataManifestObject(version as DataVersion));
        if (!read) return new Set<string>();
        const text = await new Response(read.body).text();
        return new Set(parseManifest(text, version as DataVersion).map((f) => f.sha256));
      })();
      files.catch(() => manifests.delete(version));
    }
    manifests.set(version, files);
    if (manifests.size > MANIFESTS_KEPT) manifests.delete(manifests.keys().next().value!);
    return files;
  };

  /** The instance of a workspace object: `<taskId>/<index|finalize>`. */
  const instanceOf = (object: string, node: string) => {
    const [taskId, which, extra] = object.split("/");
    if (extra !== undefined || !taskId || !which) return refuse(node, "workspace", object, "not an outputs object");
    if (which === "finalize") {
      const task = assignments.tasksOf(node).find((t) => t.taskId === taskId);
      return { taskId, index: task ? task.instances : -1 };
    }
    if (!/^(0|[1-9][0-9]{0,8})$/.test(which)) return refuse(node, "workspace", object, "not an outputs object");
    return { taskId, index: Number(which) };
  };

  /** Throws unless `node` may read `object` of `bucket` now. */
  const mayRead = async (node: string, bucket: ObjectBucketName, object: string) => {
    const held = assignments.tasksOf(node);
    if (bucket === "packages") {
      if (!held.some((t) => t.digest === object)) refuse(node, bucket, object, "no task it holds has this package");
    } else if (bucket === "data") {
      const versions = new Set(held.flatMap((t) => t.dataVersions));
      const manifest = /^manifest\/([0-9a-f]{64})$/.exec(object);
      const blob = /^blob\/([0-9a-f]{64})$/.exec(object);
      if (manifest) {
        if (!versions.has(`sha256:${manifest[1]}`)) refuse(node, bucket, object, "no task it holds names this version");
      } else if (blob) {
        for (const v of versions) if ((await filesOf(v)).has(blob[1])) return;
        refuse(node, bucket, object, "no data set version of a task it holds has this file");
      } else refuse(node, bucket, object, "not a data set object");
    } else {
      const [taskId, which, extra] = object.split("/");
      // An upstream's outputs, whole: read by the instances of a task that waits for it.
      if (
        extra === undefined && taskId && /^(finalize|0|[1-9][0-9]{0,8})$/.test(which ?? "") &&
        held.some((t) => t.upstream.includes(taskId))
      ) return;
      const { index } = instanceOf(object, node);
      if (assignments.attemptOf(node, taskId, index) !== null) return;
      const task = held.find((t) => t.taskId === taskId);
      if (task && assignments.attemptOf(node, taskId, task.instances) !== null) return;
      refuse(node, bucket, object, "it holds neither this instance, its task's finalize, nor a task after it");
    }
  };

  /** Throws unless `node` may write `object` of the workspace now (with `attempt`, when given). */
  const mayWrite = (node: string, bucket: ObjectBucketName, object: string, attempt?: number) => {
    if (bucket !== "workspace") refuse(node, bucket, object, "nodes write only outputs");
    const { taskId, index } = instanceOf(object, node);
    const held = assignments.attemptOf(node, taskId, index);
    if (held === null) refuse(node, bucket, object, "it does not hold this instance");
    if (attempt !== undefined && held !== attempt) {
      refuse(node, bucket, object, `it holds attempt ${held}, not attempt ${attempt}`);
    }
  };

  return { mayRead, mayWrite };
}
