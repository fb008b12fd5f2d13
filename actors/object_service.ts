/**
 * The object service: nodes reach the object store only through it, on
 * their own subjects (`parallelic.node.<name>.objects.read|write`), and it
 * checks every call against what the node holds now:
 * - a package, when the node holds an instance of a task with that digest;
 * - a data set manifest or file content, when the node holds an instance of
 *   a task that names a version holding it;
 * - an instance's outputs (read, write, delete), when the node holds that
 *   instance; a write only with the attempt it holds;
 * - every output of a task, for reading, when the node holds its finalize;
 * - every output of a task (instances and finalize), for reading, when the
 *   node holds an instance or the finalize of a task that waits for it in
 *   `[after]` (its `upstream`).
 * A stolen node key therefore reads and writes no more than the node's own
 * assignments, and no JetStream API is in a node's permissions.
 *
 * Content travels in pieces of at most {@linkcode OBJECT_PIECE_BYTES}; a
 * read or a write in progress is a session, ended by its last piece, by the
 * node (`close`, `abort`: its reader gave up), or after a minute without a
 * request. What all read sessions hold ahead of their nodes shares one
 * budget (`readBudgetBytes`): past it, reads wait for others to drain.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import type { Bus } from "../core/bus.ts";
import { type BudgetShare, type ByteBudget, createByteBudget, shareOf } from "../core/byte_budget.ts";
import { parseManifest } from "../core/data_manifest.ts";
import { AuthError, NotFoundError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { Bucket, ObjectSummary } from "../core/objects.ts";
import { DATA_BUCKET, type DataVersion, PACKAGE_BUCKET, WORKSPACE_BUCKET } from "../core/schema.ts";
import {
  nodeObjectsReadAll,
  nodeObjectsWriteAll,
  OBJECT_PIECE_BYTES,
  type ObjectBucketName,
  type ObjectReadReply,
  type ObjectWriteReply,
} from "../core/subjects.ts";

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

/** What the object service needs. */
export interface ObjectServiceDeps {
  bus: Bus;
  log: Logger;
  /** The manager's buckets, by the short name nodes use. */
  buckets: Record<ObjectBucketName, () => Promise<Bucket>>;
  assignments: AssignmentView;
  /** Told of every refused call (the manager audits them). */
  onRefused?: (node: string, what: string) => void;
  /** Most bytes all reads together hold ahead of their nodes (64 MiB). */
  readBudgetBytes?: number;
}

/** The service of {@linkcode createObjectService}, as tests see it. */
export interface ObjectService {
  /** Reads in progress. */
  reads(): number;
  /** Writes in progress. */
  writes(): number;
  /** What reads hold ahead of their nodes. */
  readBudget: ByteBudget;
}

/** Bucket names, by the short name nodes use. */
export const OBJECT_BUCKETS: Record<ObjectBucketName, string> = {
  packages: PACKAGE_BUCKET,
  data: DATA_BUCKET,
  workspace: WORKSPACE_BUCKET,
};

const IDLE_MS = 60_000;
const MANIFESTS_KEPT = 256;

interface ReadSession {
  node: string;
  key: string;
  reader: ReadableStreamDefaultReader<Uint8Array>;
  rest: Uint8Array;
  info: ObjectSummary;
  seenAt: number;
  /** The piece the next request must ask for. */
  seq: number;
  /** Bytes sent so far. */
  sent: number;
  /** Requests answered in the order they came (a reader asks a few pieces ahead). */
  turn: Promise<unknown>;
  /** Its part of the read budget. */
  share: BudgetShare;
}

interface WriteSession {
  node: string;
  key: string;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  stored: Promise<ObjectSummary>;
  seenAt: number;
}

const summary = (i: ObjectSummary): ObjectSummary => ({
  name: i.name,
  size: i.size,
  digest: i.digest,
  metadata: i.metadata ?? {},
});

/** Serves nodes' object reads and writes until `signal` aborts. */
export function createObjectService(deps: ObjectServiceDeps, options: { signal: AbortSignal }): ObjectService {
  const { bus, log, assignments } = deps;
  const readBudget = createByteBudget(deps.readBudgetBytes ?? 64 * 2 ** 20);
  const reads = new Map<string, ReadSession>();
  const writes = new Map<string, WriteSession>();
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
        const read = await (await deps.buckets.data()).read(`manifest/${version.slice("sha256:".length)}`);
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

  /** Frees a read: its chunks fetched ahead and its part of the budget. */
  function endRead(id: string, s: ReadSession): void {
    reads.delete(id);
    s.share.close();
    void s.reader.cancel().catch(() => {});
  }

  /** Gives up a write: nothing of it is stored. */
  function endWrite(id: string, s: WriteSession, why: string): void {
    writes.delete(id);
    void s.writer.abort(new Error(why)).catch(() => {});
  }

  const piece = async (s: ReadSession): Promise<{ data: string; done: boolean }> => {
    const parts: Uint8Array[] = [];
    let size = 0;
    let done = false;
    while (size < OBJECT_PIECE_BYTES) {
      let chunk = s.rest;
      s.rest = new Uint8Array(0);
      if (!chunk.byteLength) {
        const next = await s.reader.read();
        if (next.done) {
          done = true;
          break;
        }
        chunk = next.value;
      }
      const take = chunk.subarray(0, OBJECT_PIECE_BYTES - size);
      s.rest = chunk.subarray(take.byteLength);
      parts.push(take);
      size += take.byteLength;
    }
    s.sent += size;
    // Passed on: what the session holds ahead of its node shrinks.
    s.share.give(size);
    // The last piece says so even when the object ends on a piece boundary: readers count on ceil(size / piece).
    if (!done && s.sent >= s.info.size) {
      done = true;
      void s.reader.cancel().catch(() => {});
    }
    if (done) s.share.close();
    return { data: Buffer.concat(parts).toString("base64"), done };
  };

  bus.serve(nodeObjectsReadAll, async (req): Promise<ObjectReadReply> => {
    const { node, bucket, object } = req;
    if (req.op === "close") {
      // Allowed after the node lost the instance too: closing frees, it reads nothing.
      const open = reads.get(req.session);
      if (open && open.node === node && open.key === `${bucket}/${object}`) endRead(req.session, open);
      return { ok: true, info: null };
    }
    await mayRead(node, bucket, object);
    const store = await deps.buckets[bucket]();
    if (req.op === "info") {
      const info = await store.info(object);
      return { ok: true, info: info && summary(info) };
    }
    const key = `${bucket}/${object}`;
    let s: ReadSession | undefined;
    if (req.session) {
      s = reads.get(req.session);
      if (!s || s.node !== node || s.key !== key) {
        throw new NotFoundError(`No read of '${object}' in progress under that session`, { code: "no_session" });
      }
    } else {
      const share = shareOf(readBudget);
      const read = await store.read(object, { budget: share });
      if (!read) return { ok: true, info: null };
      const session = crypto.randomUUID();
      s = {
        node,
        key,
        reader: read.body.getReader(),
        rest: new Uint8Array(0),
        info: summary(read.info),
        seenAt: 0,
        seq: 0,
        sent: 0,
        turn: Promise.resolve(),
        share,
      };
      reads.set(session, s);
      req = { ...req, session, seq: 0 };
    }
    const session = req.session!;
    const seq = req.seq ?? s.seq;
    const it = s;
    const answer = s.turn.then(async () => {
      if (seq !== it.seq) {
        throw new ValidationError(`Read of '${object}' asked for piece ${seq}, expected ${it.seq}`, {
          code: "piece_out_of_order",
        });
      }
      it.seq++;
      it.seenAt = Date.now();
      try {
        const { data, done } = await piece(it);
        if (done) reads.delete(session);
        return { ok: true as const, info: it.info, session, data, done };
      } catch (e) {
        endRead(session, it);
        throw e;
      }
    });
    s.turn = answer.catch(() => {});
    return await answer;
  }, { signal: options.signal });

  bus.serve(nodeObjectsWriteAll, async (req): Promise<ObjectWriteReply> => {
    const { node, bucket, object } = req;
    if (req.op === "delete") {
      mayWrite(node, bucket, object);
      return { ok: true, deleted: await (await deps.buckets[bucket]()).delete(object) };
    }
    if (req.op === "abort") {
      const open = writes.get(req.session);
      if (open && open.node === node && open.key === `${bucket}/${object}`) endWrite(req.session, open, "given up");
      return { ok: true };
    }
    const attempt = Number(req.metadata?.attempt ?? NaN);
    let session = req.session;
    let s: WriteSession | undefined;
    if (session) {
      s = writes.get(session);
      if (!s || s.node !== node || s.key !== `${bucket}/${object}`) {
        throw new NotFoundError(`No write of '${object}' in progress under that session`, { code: "no_session" });
      }
    } else {
      if (!Number.isSafeInteger(attempt)) {
        throw new ValidationError(`Cannot store '${object}' without its attempt in the metadata`, {
          code: "attempt_missing",
        });
      }
      mayWrite(node, bucket, object, attempt);
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      const store = await deps.buckets[bucket]();
      session = crypto.randomUUID();
      s = {
        node,
        key: `${bucket}/${object}`,
        writer: pipe.writable.getWriter(),
        stored: store.put(object, pipe.readable, req.metadata).then(summary),
        seenAt: 0,
      };
      s.stored.catch(() => {});
      writes.set(session, s);
    }
    s.seenAt = Date.now();
    try {
      // Still held: an attempt fenced off meanwhile stores nothing more.
      mayWrite(node, bucket, object);
      const data = new Uint8Array(Buffer.from(req.data, "base64"));
      if (data.byteLength) await s.writer.write(data);
      if (!req.end) {
        await s.writer.ready;
        return { ok: true, session };
      }
      writes.delete(session);
      await s.writer.close();
      return { ok: true, session, info: await s.stored };
    } catch (e) {
      writes.delete(session);
      await s.writer.abort(e).catch(() => {});
      throw e;
    }
  }, { signal: options.signal });

  const sweep = setInterval(() => {
    const old = Date.now() - IDLE_MS;
    for (const [id, s] of reads) if (s.seenAt < old) endRead(id, s);
    for (const [id, s] of writes) if (s.seenAt < old) endWrite(id, s, "abandoned");
  }, IDLE_MS / 4);
  options.signal.addEventListener("abort", () => {
    clearInterval(sweep);
    for (const [id, s] of reads) endRead(id, s);
    for (const [id, s] of writes) endWrite(id, s, "stopping");
  }, { once: true });
  return { reads: () => reads.size, writes: () => writes.size, readBudget };
}
