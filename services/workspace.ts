/**
 * The workspace service: owns what lives in JetStream for tasks. It creates
 * the package bucket (packages stored once per SHA-256 digest), the
 * workspace bucket (one tar of outputs per instance, and one of finalize's)
 * and the log stream; it stores and reads packages, streams a task's
 * workspace out as a zip or a tar, and deletes a finished task with
 * everything it holds.
 *
 * @module
 */
import { jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { retryJetStream } from "../core/jetstream_retry.ts";
import * as zip from "@zip.js/zip.js";
import { ConflictError } from "../core/errors.ts";
import { createKeyedLock } from "../core/lock.ts";
import type { Logger } from "../core/log.ts";
import { type Bucket, CHUNK_BYTES, openBucket } from "../core/objects.ts";
import {
  DATA_BUCKET,
  type Digest,
  FINAL_STATES,
  LOG_STREAM,
  logSubjectsAll,
  logSubjectsOfTask,
  outputObject,
  PACKAGE_BUCKET,
  type StorageView,
  type TaskRecord,
  WORKSPACE_BUCKET,
} from "../core/schema.ts";
import { readTar, type TarSource, tarStream } from "../core/tar.ts";
import {
  afterKey,
  type BatchedWrite,
  dataUseKey,
  dependentsOf,
  failedOf,
  instancesOf,
  notifyKey,
  notifyOutboxKey,
  spansOf,
  taskDeletion,
  taskKey,
  TASKS,
  writeBatched,
} from "../core/kv.ts";

zip.configure({ useWebWorkers: false });

/** What the workspace service needs. */
export interface WorkspaceServiceDeps {
  nc: NatsConnection;
  kv: Deno.Kv;
  log: Logger;
}

/** Options of {@linkcode createWorkspaceService}. */
export interface WorkspaceServiceOptions {
  /** JetStream replicas for buckets and streams (3 on a NATS cluster). @default {1} */
  replicas?: number;
  /** Most bytes of logs kept; the oldest go first. @default {8 GiB} */
  maxLogBytes?: number;
}

/** Which outputs of a task's workspace to read. */
export interface WorkspaceSelection {
  /** Only this instance's outputs, at the root of the archive. */
  instance?: number;
  /** Only finalize's outputs, at the root of the archive. */
  finalize?: boolean;
}

/** A package to store as a stream: its size, and its bytes. */
export interface PackageSource {
  size: number;
  open(): Promise<ReadableStream<Uint8Array>>;
}

/** The workspace service. */
export interface WorkspaceService {
  /**
   * Stores a package under its digest, from bytes or streamed from a source
   * (a spooled upload); returns false when it was already there.
   */
  putPackage(digest: Digest, pkg: Uint8Array | PackageSource): Promise<boolean>;
  /** Reads a package, or null when it is not stored. */
  getPackage(digest: Digest): Promise<Uint8Array | null>;
  /** Bytes held by the package bucket. */
  packageBytes(): Promise<number>;
  /**
   * Runs `fn` while no task deletion can drop package `digest` (store the
   * package and create its task inside).
   */
  withPackage<T>(digest: Digest, fn: () => Promise<T>): Promise<T>;
  /**
   * A task's outputs as file sources: every instance's under `<index>/` and
   * finalize's under `finalize/`, or one of them at the root.
   */
  outputs(task: TaskRecord, selection?: WorkspaceSelection): AsyncGenerator<TarSource>;
  /** A task's outputs as a zip stream (built as it is read, never whole in memory). */
  zip(task: TaskRecord, selection?: WorkspaceSelection): ReadableStream<Uint8Array>;
  /** A task's outputs as a tar stream. */
  tar(task: TaskRecord, selection?: WorkspaceSelection): ReadableStream<Uint8Array>;
  /**
   * Deletes a finished task: its outputs, its logs (purged by subject), its
   * instance records (in batches), its record, and its package when no other
   * task uses it. Returns the bytes freed in the object store and log stream.
   *
   * @throws {ConflictError} When the task has not ended.
   */
  deleteTask(task: TaskRecord): Promise<{ freedBytes: number }>;
  /**
   * Runs `fn` while task `id` cannot be deleted, once its package is known to be stored (a rerun needs it).
   *
   * @throws {ConflictError} When the package is gone.
   */
  withTaskPackage<T>(id: string, digest: Digest, fn: () => Promise<T>): Promise<T>;
  /** Bytes each store holds. */
  storage(): Promise<StorageView>;
}

/** Ensures the buckets and streams Parallelic uses exist; returns the package bucket. */
export async function ensureStorage(
  nc: NatsConnection,
  options: WorkspaceServiceOptions = {},
  log?: Logger,
): Promise<ObjectStore> {
  const replicas = options.replicas ?? 1;
  // A NATS cluster that just started may not have elected its JetStream leader yet: wait for it.
  const jsm = await retryJetStream(
    () => jetstreamManager(nc, { timeout: 3000 }),
    120_000,
    (e) => log?.warn("workspace:waiting-for-jetstream", { error: e.message }),
  );
  const config = {
    name: LOG_STREAM,
    subjects: [logSubjectsAll],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_bytes: options.maxLogBytes ?? 8 * 2 ** 30,
    num_replicas: replicas,
    // Logs are read with direct gets, which any replica answers.
    allow_direct: true,
  };
  const waiting = (e: Error) => log?.warn("workspace:waiting-for-jetstream", { error: e.message });
  await retryJetStream(
    async () => {
      try {
        await jsm.streams.info(LOG_STREAM);
        await jsm.streams.update(LOG_STREAM, { max_bytes: config.max_bytes, allow_direct: true });
      } catch {
        await jsm.streams.add(config);
      }
    },
    120_000,
    waiting,
  );
  return await retryJetStream(
    () => new Objm(nc).create(PACKAGE_BUCKET, { replicas, storage: StorageType.File }),
    120_000,
    waiting,
  );
}

/** How many object deletions run at once when a task is deleted. */
const DELETE_CONCURRENCY = 16;

/** Creates the workspace service (creating its buckets and streams). */
export async function createWorkspaceService(
  deps: WorkspaceServiceDeps,
  options: WorkspaceServiceOptions = {},
): Promise<WorkspaceService> {
  const { nc, kv } = deps;
  const log = deps.log.scope({ actor: "workspace" });
  const packages = await ensureStorage(nc, options, log);
  // Digests known to be stored (forgotten when a task's deletion removes one): a resubmitted package needs no lookup.
  const stored = new Set<string>();
  const remember = (digest: string) => {
    if (stored.size >= 10_000) stored.clear();
    stored.add(digest);
  };
  const outputs: Bucket = await retryJetStream(
    () => openBucket(nc, WORKSPACE_BUCKET, { create: true, replicas: options.replicas }),
    120_000,
  );
  const jsm = await jetstreamManager(nc);
  const locks = createKeyedLock();

  /** The objects a selection reads, each with the folder its files go in. */
  function selected(task: TaskRecord, selection: WorkspaceSelection): Array<[string, string]> {
    if (selection.instance !== undefined) return [[outputObject(task.id, selection.instance), ""]];
    if (selection.finalize) return [[outputObject(task.id, "finalize"), ""]];
    // A task that stored no outputs needs no lookups.
    if ((task.outputBytes ?? 0) === 0) return [];
    const all: Array<[string, string]> = [];
    for (let i = 0; i < task.spec.instances; i++) all.push([outputObject(task.id, i), `${i}/`]);
    if (task.spec.finalize) all.push([outputObject(task.id, "finalize"), "finalize/"]);
    return all;
  }

  async function* sources(task: TaskRecord, selection: WorkspaceSelection = {}): AsyncGenerator<TarSource> {
    for (const [object, prefix] of selected(task, selection)) {
      const read = await outputs.read(object);
      if (!read) continue;
      for await (const entry of readTar(read.body)) {
        if (entry.type !== "file") continue;
        yield {
          path: prefix + entry.path,
          size: entry.size,
          mode: entry.mode,
          mtimeSec: entry.mtimeSec,
          open: () => entry.body,
        };
      }
    }
  }

  function zipOf(task: TaskRecord, selection: WorkspaceSelection = {}): ReadableStream<Uint8Array> {
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const writer = new zip.ZipWriter(writable, { level: 0, keepOrder: true });
    (async () => {
      try {
        for await (const source of sources(task, selection)) {
          await writer.add(source.path, await source.open(), {
            level: 0,
            zip64: source.size >= 0xffffffff,
            lastModDate: new Date((source.mtimeSec ?? 0) * 1000),
          });
        }
        await writer.close();
      } catch (e) {
        log.warn("workspace:zip-failed", { taskId: task.id, error: String(e) });
        await writable.abort(e).catch(() => {});
      }
    })();
    return readable;
  }

  /** Runs `fn` on each item, `limit` at a time. */
  async function eachLimited<T>(items: Iterable<T>, limit: number, fn: (item: T) => Promise<void>) {
    const it = items[Symbol.iterator]();
    const worker = async () => {
      for (let next = it.next(); !next.done; next = it.next()) await fn(next.value);
    };
    await Promise.all(Array.from({ length: limit }, worker));
  }

  /** Deletes a task under its lock, as it is now: a rerun may have started it again since the caller read it. */
  function deleteTask(task: TaskRecord): Promise<{ freedBytes: number }> {
    return locks.run(`task/${task.id}`, async () => {
      const now = (await kv.get<TaskRecord>(taskKey(task.id))).value;
      if (!now) return { freedBytes: 0 };
      return await deleteEnded(now);
    });
  }

  async function deleteEnded(task: TaskRecord): Promise<{ freedBytes: number }> {
    if (!FINAL_STATES.has(task.state)) {
      throw new ConflictError(
        `Cannot delete task '${task.id}' as it is ${task.state}: cancel it first (parallelic cancel ${task.id})`,
        { code: "task_not_finished" },
      );
    }
    // Tasks that wait for it, or read its workspace while they run, keep it.
    const dependents: Array<{ key: Deno.KvKey; value: null }> = [];
    const waiting: string[] = [];
    for await (const e of kv.list<{ taskId: string }>({ prefix: dependentsOf(task.id) })) {
      dependents.push({ key: e.key, value: null });
      const dependent = (await kv.get<TaskRecord>(taskKey(e.value.taskId))).value;
      if (dependent && !FINAL_STATES.has(dependent.state)) waiting.push(`${dependent.id} (${dependent.state})`);
    }
    if (waiting.length > 0) {
      throw new ConflictError(
        `Cannot delete task '${task.id}' as task${waiting.length > 1 ? "s" : ""} ${waiting.join(", ")} ` +
          `wait${waiting.length > 1 ? "" : "s"} for it ([after]): cancel ${waiting.length > 1 ? "them" : "it"} first`,
        { code: "task_has_dependents" },
      );
    }
    let freedBytes = 0;
    // Outputs: every instance is looked up only when the task stored some.
    const names = selected(task, {}).map(([name]) => name);
    await eachLimited(names, DELETE_CONCURRENCY, async (name) => {
      const info = await outputs.info(name);
      if (info && (await outputs.delete(name))) freedBytes += info.size;
    });
    const logs = await jsm.streams.purge(LOG_STREAM, { filter: logSubjectsOfTask(task.id) });
    freedBytes += task.logBytes ?? 0;
    const keys: BatchedWrite[] = [];
    for await (const e of kv.list({ prefix: instancesOf(task.id) })) keys.push({ key: e.key, value: null });
    // Assignment spans are gone once their instances ended; one left by a manager killed mid-commit goes too.
    for await (const e of kv.list({ prefix: spansOf(task.id) })) keys.push({ key: e.key, value: null });
    for await (const e of kv.list({ prefix: failedOf(task.id) })) keys.push({ key: e.key, value: null });
    for (const { version } of Object.values(task.spec.data ?? {})) {
      if (version) keys.push({ key: dataUseKey(version, task.id), value: null });
    }
    keys.push(...dependents);
    for (const up of task.spec.after?.tasks ?? []) keys.push({ key: afterKey(up, task.id), value: null });
    keys.push(...[notifyOutboxKey, notifyKey].map((k) => ({ key: k(task.id), value: null })), ...taskDeletion(task));
    await writeBatched(kv, keys);
    // The package goes when no other task uses it (checked under its lock, so a submit cannot slip in).
    await locks.run(`package/${task.digest}`, async () => {
      for await (const e of kv.list<TaskRecord>({ prefix: TASKS })) if (e.value.digest === task.digest) return;
      const info = await packages.info(task.digest);
      if (info && !info.deleted) {
        await packages.delete(task.digest);
        stored.delete(task.digest);
        freedBytes += info.size;
      }
    });
    log.info("workspace:task-deleted", {
      taskId: task.id,
      objects: names.length,
      logMessages: logs.purged,
      records: keys.length,
      freedBytes,
    });
    return { freedBytes };
  }

  return {
    async putPackage(digest, pkg) {
      if (stored.has(digest)) return false;
      const size = pkg instanceof Uint8Array ? pkg.byteLength : pkg.size;
      const info = await packages.info(digest);
      if (info && !info.deleted && info.size === size) {
        remember(digest);
        return false;
      }
      if (pkg instanceof Uint8Array) await packages.putBlob({ name: digest }, pkg);
      else {
        await packages.put({ name: digest, options: { max_chunk_size: CHUNK_BYTES } }, await pkg.open(), {
          timeout: 30_000,
        });
      }
      remember(digest);
      log.info("workspace:package-stored", { digest, bytes: size });
      return true;
    },
    getPackage: (digest) => packages.getBlob(digest),
    async packageBytes() {
      return (await packages.status()).size;
    },
    withPackage: (digest, fn) => locks.run(`package/${digest}`, fn),
    outputs: sources,
    zip: zipOf,
    tar: (task, selection) => tarStream(sources(task, selection)),
    deleteTask,
    withTaskPackage: (id, digest, fn) =>
      locks.run(`task/${id}`, async () => {
        const info = await packages.info(digest);
        if (!info || info.deleted) {
          throw new ConflictError(`Cannot run task '${id}' again as its package ${digest} is no longer stored`, {
            code: "package_gone",
          });
        }
        return await fn();
      }),
    async storage() {
      const [pkg, data, ws, logs] = await Promise.all([
        packages.status().then((s) => s.size),
        new Objm(nc).open(DATA_BUCKET).then((b) => b.status()).then((s) => s.size).catch(() => 0),
        outputs.bytes(),
        jsm.streams.info(LOG_STREAM).then((i) => i.state.bytes),
      ]);
      return { packages: pkg, data, workspaces: ws, logs };
    },
  };
}
