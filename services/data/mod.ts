/**
 * The data service: owns shared data sets. It stores uploads as content-
 * addressed versions in the JetStream object store, keeps their records in
 * Deno KV, pins the versions a task names at submit, refuses to delete a
 * version a live task uses, and collects content no version needs.
 *
 * Storage (bucket {@linkcode DATA_BUCKET}): every distinct file content once,
 * as `blob/<sha256 hex>`; every version's canonical manifest as
 * `manifest/<hex>` (see `core/data_manifest.ts`). An upload streams each file
 * into `tmp/<uuid>` (1 MiB chunks, never whole in memory), then renames it
 * to its blob name, or drops it when that content is already stored.
 *
 * Consistency without a global lock on uploads: the catalog lock (in this
 * process) serializes commits, deletes, sweeps and submits that pin data;
 * content an upload in progress has stored is pinned in memory, so a sweep
 * never takes it away before the upload commits.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Clock } from "../../core/clock.ts";
import {
  checkDataPath,
  distinctBytes,
  type ManifestFile,
  manifestText,
  parseManifest,
  versionOf,
} from "../../core/data_manifest.ts";
import {
  AuthError,
  ConflictError,
  NotFoundError,
  tooLarge,
  TooLargeError,
  ValidationError,
} from "../../core/errors.ts";
import { createKeyedLock } from "../../core/lock.ts";
import { retryJetStream } from "../../core/jetstream_retry.ts";
import type { Logger } from "../../core/log.ts";
import { type Bucket, digestHex, openBucket } from "../../core/objects.ts";
import {
  DATA_BUCKET,
  dataBlobObject,
  dataManifestObject,
  DataSetName,
  type DataSetView,
  type DataUseRecord,
  type DataVersion,
  type DataVersionRecord,
  FINAL_STATES,
  type TaskRecord,
  type TaskSpec,
} from "../../core/schema.ts";
import { readTar, type TarEntry } from "../../core/tar.ts";
import { lineOf } from "../../core/task_toml.ts";
import {
  DATA_VERSIONS,
  dataBytesKey,
  dataSetKey,
  dataUsesOf,
  dataVersionKey,
  dataVersionsOf,
  taskKey,
} from "../../core/kv.ts";
import { accessRecord, type DataCaller, type DataSetAccess, mayPut, mayShare, mayUse, readAccess } from "./access.ts";

/** What the data service needs. */
export interface DataServiceDeps {
  nc: NatsConnection;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
}

/** Options of {@linkcode createDataService}. */
export interface DataServiceOptions {
  /** Largest data set version accepted, in bytes of file content. @default {256 GiB} */
  maxDataSetBytes?: number;
  /**
   * Most files in one data set version: its manifest and the upload's
   * bookkeeping grow with them (and a tar of empty files costs nothing
   * against `maxDataSetBytes`). @default {1,000,000}
   */
  maxDataSetFiles?: number;
  /** JetStream replicas of the bucket. @default {1} */
  replicas?: number;
}

/** How an upload's body is laid out. */
export type UploadFormat = { kind: "tar" } | { kind: "file"; path: string };

/** Options of {@linkcode DataService.put}. */
export interface PutOptions {
  format: UploadFormat;
  /** Who uploads. */
  owner: string;
  /** Whether the uploader is an admin (who may add versions to any data set). */
  admin?: boolean;
  /** Sets whether the data set is shared (a new one is not, unless this says so). */
  shared?: boolean;
  /** Bytes of file content the client says it sends; checked against the limit before anything is read. */
  declaredBytes?: number;
}

/** The outcome of {@linkcode DataService.put}. */
export interface PutResult {
  record: DataVersionRecord;
  /** False when the same content was already a version of this data set. */
  created: boolean;
}

/** The data service. */
export interface DataService {
  /** The largest version accepted, in bytes. */
  readonly maxDataSetBytes: number;
  /** The most files a version may hold. */
  readonly maxDataSetFiles: number;
  /**
   * Stores `body` as a version of data set `name`.
   *
   * @throws {ValidationError} On a bad name, entry or empty upload.
   * @throws {TooLargeError} Before storing, when the declared or tar-announced size is over the limit.
   */
  put(name: string, body: ReadableStream<Uint8Array>, options: PutOptions): Promise<PutResult>;
  /** Every data set `by` may see, with its versions newest first. */
  list(by?: DataCaller): Promise<DataSetView[]>;
  /** One data set. @throws {NotFoundError} When there is none that `by` may see. */
  get(name: string, by?: DataCaller): Promise<DataSetView>;
  /**
   * Sets whether a data set is shared.
   *
   * @throws {NotFoundError} When there is none that `by` may see.
   * @throws {AuthError} When `by` is neither its owner nor an admin.
   */
  share(name: string, shared: boolean, by?: DataCaller): Promise<DataSetView>;
  /**
   * Deletes a version (`ref` a full version or a prefix) or, without `ref`,
   * every version of a data set, then frees content nothing else uses.
   *
   * @throws {ConflictError} When a queued or running task uses one of them.
   * @throws {AuthError} When `by` is given, is no admin, and does not own one of them.
   */
  remove(
    name: string,
    ref?: string,
    by?: { user: string; admin: boolean },
  ): Promise<{ removed: DataVersion[]; freedBytes: number }>;
  /**
   * Pins the data sets `spec` names to full versions (the newest when none
   * is given), then runs `submit` under the catalog lock, so no version goes
   * away in between; the task actor records the uses with the task itself.
   *
   * @throws {ValidationError} Naming the task.toml key and line of an unknown data set or version, or of one
   * that is not shared with `by`.
   */
  submitWith<T extends { id: string }>(
    spec: TaskSpec,
    taskToml: string,
    submit: (pinned: TaskSpec) => Promise<T>,
    by?: DataCaller,
  ): Promise<T>;
  /** Deletes content, manifests and temporary objects that no version needs. */
  sweep(): Promise<{ objects: number; freedBytes: number }>;
  /** Bytes the data bucket holds. */
  bytes(): Promise<number>;
}

/** An upload in progress: what it stored so far, pinned against sweeps. */
interface Upload {
  tmp: Set<string>;
  blobs: Set<string>;
}

const short = (version: string) => `${version.slice(0, 19)}…`;

/** Creates the data service (and its bucket). */
export async function createDataService(deps: DataServiceDeps, options: DataServiceOptions = {}): Promise<DataService> {
  const { kv, clock } = deps;
  const log = deps.log.scope({ actor: "data" });
  const maxDataSetBytes = options.maxDataSetBytes ?? 256 * 2 ** 30;
  const maxDataSetFiles = options.maxDataSetFiles ?? 1_000_000;
  // Retried while a NATS cluster is still forming (too few peers for a replicated bucket).
  const bucket: Bucket = await retryJetStream(
    () => openBucket(deps.nc, DATA_BUCKET, { create: true, replicas: options.replicas }),
    120_000,
  );
  const locks = createKeyedLock();
  const CATALOG = "catalog";
  const uploads = new Set<Upload>();

  const versionsOf = async (name: string): Promise<DataVersionRecord[]> => {
    const out: DataVersionRecord[] = [];
    for await (const e of kv.list<DataVersionRecord>({ prefix: dataVersionsOf(name) })) out.push(e.value);
    return out.sort((a, b) => b.putAt - a.putAt);
  };

  const readManifest = async (version: DataVersion): Promise<ManifestFile[]> => {
    const read = await bucket.read(dataManifestObject(version));
    if (!read) {
      throw new NotFoundError(`Manifest of data set version ${version} is missing`, { code: "manifest_missing" });
    }
    return parseManifest(await new Response(read.body).text(), version);
  };

  /** Recomputes the bytes of distinct content a data set holds (under the catalog lock). */
  const refreshBytes = async (name: string) => {
    const versions = await versionsOf(name);
    if (versions.length === 0) return await kv.delete(dataBytesKey(name));
    const manifests = await Promise.all(versions.map((v) => readManifest(v.version)));
    await kv.set(dataBytesKey(name), distinctBytes(manifests));
  };

  const overLimit = (name: string, size: number, partial = false) =>
    tooLarge(`store data set '${name}'`, size, maxDataSetBytes, "data_set_too_large", partial);

  /** Streams one file into the store; returns its content hash, size and whether it was new. */
  async function storeFile(upload: Upload, name: string, body: ReadableStream<Uint8Array>, before: number) {
    const tmp = `tmp/${crypto.randomUUID()}`;
    upload.tmp.add(tmp);
    let seen = 0;
    const counted = body.pipeThrough(
      new TransformStream<Uint8Array, Uint8Array>({
        transform(chunk, controller) {
          seen += chunk.byteLength;
          if (before + seen > maxDataSetBytes) throw overLimit(name, before + seen, true);
          controller.enqueue(chunk);
        },
      }),
    );
    const info = await bucket.put(tmp, counted);
    const hex = digestHex(info);
    upload.blobs.add(hex);
    const isNew = await locks.run(`blob/${hex}`, async () => {
      if (await bucket.info(dataBlobObject(hex))) {
        await bucket.delete(tmp);
        return false;
      }
      await bucket.rename(tmp, dataBlobObject(hex));
      return true;
    });
    upload.tmp.delete(tmp);
    return { hex, size: info.size, isNew };
  }

  async function* entriesOf(body: ReadableStream<Uint8Array>, format: UploadFormat): AsyncGenerator<TarEntry> {
    if (format.kind === "tar") return yield* readTar(body);
    yield { path: format.path, type: "file", size: -1, mode: 0o644, mtimeSec: 0, linkTarget: "", body };
  }

  async function put(name: string, body: ReadableStream<Uint8Array>, options: PutOptions): Promise<PutResult> {
    const checked = DataSetName.safeParse(name);
    if (!checked.success) {
      throw new ValidationError(`Cannot store data set '${name}': ${checked.error.issues[0].message}`, {
        code: "bad_data_set_name",
      });
    }
    if ((options.declaredBytes ?? 0) > maxDataSetBytes) throw overLimit(name, options.declaredBytes!);
    const by = { user: options.owner, admin: options.admin ?? false };
    // Checked before the upload is read (a refused upload costs nothing), and again when it commits.
    mayPut(name, await accessOf(name), by, options.shared);
    const upload: Upload = { tmp: new Set(), blobs: new Set() };
    uploads.add(upload);
    const files: ManifestFile[] = [];
    const paths = new Set<string>();
    let total = 0;
    let newBytes = 0;
    try {
      for await (const entry of entriesOf(body, options.format)) {
        if (entry.type === "dir") continue;
        if (entry.type !== "file") {
          throw new ValidationError(
            `Cannot store data set '${name}' as entry '${entry.path}' is a ${entry.type}: data sets hold regular files only`,
            { code: "bad_entry_type" },
          );
        }
        if (files.length >= maxDataSetFiles) {
          throw new TooLargeError(
            `Cannot store data set '${name}' as it holds more than ${maxDataSetFiles} files (--max-data-files): ` +
              "pack small files into fewer, larger ones",
            { code: "data_set_too_many_files" },
          );
        }
        const path = checkDataPath(entry.path, `data set '${name}'`);
        if (paths.has(path)) {
          throw new ValidationError(`Cannot store data set '${name}' as entry '${path}' appears twice`, {
            code: "duplicate_entry",
          });
        }
        paths.add(path);
        if (total + entry.size > maxDataSetBytes) throw overLimit(name, total + entry.size, true);
        const stored = await storeFile(upload, name, entry.body, total);
        total += stored.size;
        if (stored.isNew) newBytes += stored.size;
        files.push({ path, size: stored.size, mode: entry.mode & 0o111 ? 0o755 : 0o644, sha256: stored.hex });
      }
      if (files.length === 0) {
        throw new ValidationError(`Cannot store data set '${name}' as the upload holds no files`, {
          code: "empty_data_set",
        });
      }
      const text = manifestText(files);
      const version = versionOf(text);
      return await locks.run(CATALOG, async () => {
        const now = clock.now();
        const access = await accessOf(name);
        mayPut(name, access, by, options.shared);
        const existing = (await kv.get<DataVersionRecord>(dataVersionKey(name, version))).value;
        if (!(await bucket.info(dataManifestObject(version)))) {
          await bucket.put(dataManifestObject(version), ReadableStream.from([new TextEncoder().encode(text)]));
        }
        const record: DataVersionRecord = existing ? { ...existing, putAt: now } : {
          name,
          version,
          files: files.length,
          bytes: total,
          newBytes,
          createdAt: now,
          putAt: now,
          owner: options.owner,
        };
        const op = kv.atomic().set(dataVersionKey(name, version), record);
        if (!access) {
          op.set(dataSetKey(name), { name, owner: options.owner, shared: options.shared ?? false, createdAt: now });
        } else if (options.shared !== undefined && (access.legacy || access.shared !== options.shared)) {
          op.set(dataSetKey(name), accessRecord({ ...access, shared: options.shared }));
        }
        if (!(await op.commit()).ok) throw new Error("Deno KV atomic commit failed");
        await refreshBytes(name);
        log.info("data:put", { name, version, files: files.length, bytes: total, newBytes, created: !existing });
        return { record, created: !existing };
      });
    } catch (e) {
      await Promise.all([...upload.tmp].map((t) => bucket.delete(t).catch(() => false)));
      // Content stored before the failure is no longer pinned once this upload is over: collect it.
      if (newBytes > 0) {
        queueMicrotask(() => void sweep().catch((e) => log.warn("data:sweep-failed", { error: String(e) })));
      }
      throw e;
    } finally {
      uploads.delete(upload);
    }
  }

  const view = async (name: string, versions: DataVersionRecord[], access: DataSetAccess): Promise<DataSetView> => ({
    name,
    owner: access.owner,
    shared: access.shared,
    versions,
    bytes: (await kv.get<number>(dataBytesKey(name))).value ?? 0,
  });

  const accessOf = async (name: string, versions?: DataVersionRecord[]) =>
    await readAccess(kv, name, versions ?? await versionsOf(name));

  async function list(by?: DataCaller): Promise<DataSetView[]> {
    const byName = new Map<string, DataVersionRecord[]>();
    for await (const e of kv.list<DataVersionRecord>({ prefix: DATA_VERSIONS })) {
      const list = byName.get(e.value.name) ?? [];
      list.push(e.value);
      byName.set(e.value.name, list);
    }
    const views = await Promise.all(
      [...byName].sort(([a], [b]) => a < b ? -1 : 1).map(async ([name, vs]) => {
        vs.sort((a, b) => b.putAt - a.putAt);
        const access = (await accessOf(name, vs))!;
        return mayUse(access, by) ? await view(name, vs, access) : null;
      }),
    );
    return views.filter((v) => v !== null);
  }

  /** The versions and access of a data set `by` may see. @throws {NotFoundError} */
  async function visible(name: string, by: DataCaller | undefined) {
    const versions = await versionsOf(name);
    const access = await accessOf(name, versions);
    if (versions.length === 0 || !access || !mayUse(access, by)) {
      throw new NotFoundError(`Data set '${name}' does not exist`, { code: "data_set_not_found" });
    }
    return { versions, access };
  }

  async function get(name: string, by?: DataCaller): Promise<DataSetView> {
    const { versions, access } = await visible(name, by);
    return await view(name, versions, access);
  }

  async function share(name: string, shared: boolean, by?: DataCaller): Promise<DataSetView> {
    return await locks.run(CATALOG, async () => {
      const { versions, access } = await visible(name, by);
      if (!mayShare(access, by)) {
        throw new AuthError(
          `Cannot change whether data set '${name}' is shared as it belongs to '${access.owner}': only its owner or an admin may`,
          { code: "forbidden" },
        );
      }
      const next = { ...access, shared, legacy: false };
      await kv.set(dataSetKey(name), accessRecord(next));
      log.info("data:shared", { name, shared, by: by?.user });
      return await view(name, versions, next);
    });
  }

  /** The version of `versions` that `ref` (a full version or prefix) names; null when none; throws when ambiguous. */
  const match = (name: string, versions: DataVersionRecord[], ref: string) => {
    const found = versions.filter((v) => v.version.startsWith(ref));
    if (found.length > 1) {
      throw new ValidationError(
        `Version '${ref}' of data set '${name}' is ambiguous: it starts ${found.length} versions; give more digits`,
        { code: "ambiguous_version" },
      );
    }
    return found[0] ?? null;
  };

  /** The queued or running tasks using `version`; forgets uses by tasks that ended or are gone. */
  async function liveUsers(version: string): Promise<TaskRecord[]> {
    const live: TaskRecord[] = [];
    for await (const e of kv.list<DataUseRecord>({ prefix: dataUsesOf(version) })) {
      const task = (await kv.get<TaskRecord>(taskKey(e.value.taskId))).value;
      if (task && !FINAL_STATES.has(task.state)) live.push(task);
      else await kv.delete(e.key);
    }
    return live;
  }

  async function remove(name: string, ref?: string, by?: DataCaller) {
    const removed = await locks.run(CATALOG, async () => {
      const { versions } = await visible(name, by);
      let targets = versions;
      if (ref !== undefined) {
        const found = match(name, versions, ref);
        if (!found) {
          throw new NotFoundError(`Data set '${name}' has no version '${ref}'`, { code: "data_version_not_found" });
        }
        targets = [found];
      }
      const foreign = by && !by.admin ? targets.find((v) => v.owner !== by.user) : undefined;
      if (foreign) {
        throw new AuthError(
          `Cannot delete data set '${name}' version ${
            short(foreign.version)
          } as it belongs to '${foreign.owner}': only its owner or an admin may`,
          { code: "forbidden" },
        );
      }
      for (const v of targets) {
        const users = await liveUsers(v.version);
        if (users.length > 0) {
          const one = users.length === 1;
          const list = users.slice(0, 3).map((t) => `${t.id} (${t.state})`).join(", ") +
            (users.length > 3 ? ", …" : "");
          throw new ConflictError(
            `Cannot delete data set '${name}' version ${short(v.version)} as it is used by ${
              one ? "task" : `${users.length} tasks:`
            } ${list}: cancel ${one ? "it" : "them"} or wait until ${one ? "it ends" : "they end"}`,
            { code: "data_in_use" },
          );
        }
      }
      const op = kv.atomic();
      for (const v of targets) op.delete(dataVersionKey(name, v.version));
      if (targets.length === versions.length) op.delete(dataSetKey(name));
      if (!(await op.commit()).ok) throw new Error("Deno KV atomic commit failed");
      await refreshBytes(name);
      log.info("data:removed", { name, versions: targets.map((v) => v.version) });
      return targets.map((v) => v.version);
    });
    const { freedBytes } = await sweep();
    return { removed, freedBytes };
  }

  async function submitWith<T extends { id: string }>(
    spec: TaskSpec,
    taskToml: string,
    submit: (pinned: TaskSpec) => Promise<T>,
    by?: DataCaller,
  ): Promise<T> {
    const entries = Object.entries(spec.data ?? {});
    if (entries.length === 0) return await submit(spec);
    return await locks.run(CATALOG, async () => {
      const pinned: TaskSpec["data"] = {};
      for (const [key, { name, version }] of entries) {
        const at = lineOf(taskToml, ["data", key]);
        const fail = (why: string, code: string): never => {
          throw new ValidationError(
            `task.toml${at ? ` line ${at}` : ""}: key 'data.${key}' = "${name}${version ? `@${version}` : ""}": ${why}`,
            { code },
          );
        };
        const versions = await versionsOf(name);
        const access = await accessOf(name, versions);
        // One answer for both: a data set not shared with the caller is not shown to exist.
        if (versions.length === 0 || !access || !mayUse(access, by)) {
          fail(`data set '${name}' does not exist or is not shared with you`, "unknown_data_set");
        }
        const found = version === null ? versions[0] : match(name, versions, version);
        if (!found) fail(`data set '${name}' has no version ${version}`, "unknown_data_version");
        pinned[key] = { name, version: found!.version };
      }
      // The task actor stores the uses of the pinned versions in the same atomic as the task (the catalog lock,
      // held until it answers, keeps the versions from going away meanwhile).
      return await submit({ ...spec, data: pinned });
    });
  }

  async function sweep(): Promise<{ objects: number; freedBytes: number }> {
    return await locks.run(CATALOG, async () => {
      const manifests = new Set<string>();
      const live = new Set<string>();
      for await (const e of kv.list<DataVersionRecord>({ prefix: DATA_VERSIONS })) {
        if (manifests.has(dataManifestObject(e.value.version))) continue;
        manifests.add(dataManifestObject(e.value.version));
        for (const f of await readManifest(e.value.version)) live.add(f.sha256);
      }
      for (const u of uploads) for (const hex of u.blobs) live.add(hex);
      const tmpInFlight = new Set([...uploads].flatMap((u) => [...u.tmp]));
      let objects = 0;
      let freedBytes = 0;
      for (const info of await bucket.list()) {
        const stale = info.name.startsWith("blob/")
          ? !live.has(info.name.slice(5))
          : info.name.startsWith("manifest/")
          ? !manifests.has(info.name)
          : info.name.startsWith("tmp/")
          ? !tmpInFlight.has(info.name)
          : false;
        if (stale && (await bucket.delete(info.name))) {
          objects++;
          freedBytes += info.size;
        }
      }
      if (objects) log.info("data:swept", { objects, freedBytes });
      return { objects, freedBytes };
    });
  }

  // Collect what a crash may have left behind (uploads cut short).
  sweep().catch((e) => log.warn("data:sweep-failed", { error: String(e) }));

  return {
    maxDataSetBytes,
    maxDataSetFiles,
    put,
    list,
    get,
    share,
    remove,
    submitWith,
    sweep,
    bytes: () => bucket.bytes(),
  };
}
