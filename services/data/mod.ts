/**
 * The data service: owns shared data sets. It stores uploads as content-
 * addressed versions in the JetStream object store, keeps their records in
 * Deno KV, pins the versions a task names at submit, refuses to delete a
 * version a live task uses, and collects content no version needs.
 *
 * Storage (bucket `DATA_BUCKET` of `core/schema.ts`): every distinct file content once,
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
 * Where things are done: `upload.ts` (storing an upload), `versions.ts`
 * (listing, sharing, deleting), `uses.ts` (pinning at submit, live users),
 * `gc.ts` (the sweep), `catalog.ts` (reading versions, manifests and
 * access), `access.ts` (who may see, use and change a data set);
 * `state.ts` holds what they share. This file wires them.
 *
 * @module
 */
import type { DataSetView, DataVersion, TaskSpec } from "../../core/schema.ts";
import type { DataCaller } from "./access.ts";
import { sweep } from "./gc.ts";
import { createState, type DataServiceDeps, type DataServiceOptions } from "./state.ts";
import { put, type PutOptions, type PutResult } from "./upload.ts";
import { submitWith } from "./uses.ts";
import { get, list, remove, share } from "./versions.ts";

export type { DataCaller } from "./access.ts";
export type { DataServiceDeps, DataServiceOptions } from "./state.ts";
export type { PutOptions, PutResult, UploadFormat } from "./upload.ts";

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

/** Creates the data service (and its bucket). */
export async function createDataService(deps: DataServiceDeps, options: DataServiceOptions = {}): Promise<DataService> {
  const s = await createState(deps, options);
  // Collect what a crash may have left behind (uploads cut short).
  sweep(s).catch((e) => s.log.warn("data:sweep-failed", { error: String(e) }));

  return {
    maxDataSetBytes: s.maxDataSetBytes,
    maxDataSetFiles: s.maxDataSetFiles,
    put: (name, body, options) => put(s, name, body, options),
    list: (by) => list(s, by),
    get: (name, by) => get(s, name, by),
    share: (name, shared, by) => share(s, name, shared, by),
    remove: (name, ref, by) => remove(s, name, ref, by),
    submitWith: (spec, taskToml, submit, by) => submitWith(s, spec, taskToml, submit, by),
    sweep: () => sweep(s),
    bytes: () => s.bucket.bytes(),
  };
}
