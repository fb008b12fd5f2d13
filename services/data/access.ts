/**
 * Who may see, use and change a data set. A data set is owned by its first
 * uploader; unshared, only its owner and admins see it, list it, name it in
 * a task or add versions; shared, every user sees and uses it, and still
 * only its owner and admins add versions or change `shared`.
 *
 * Data sets stored before owners were kept have no record: they stay
 * shared (as every data set was), owned by their oldest version's owner,
 * and any submitter may still add versions to them until an owner or admin
 * sets `shared` (which stores a record).
 *
 * @module
 */
import { AuthError, ConflictError } from "../../core/errors.ts";
import { dataSetKey } from "../../core/kv.ts";
import type { DataSetRecord, DataVersionRecord } from "../../core/schema.ts";

/** Who asks. Absent: the system itself (sweeps, tests), which may do anything. */
export interface DataCaller {
  user: string;
  admin: boolean;
}

/** A data set's access as it stands: its record, or the one a data set from before records stands for. */
export interface DataSetAccess extends DataSetRecord {
  /** True for a data set stored before records were kept (no record in Deno KV). */
  legacy: boolean;
}

/**
 * Reads the access of data set `name`, whose versions (newest first) are
 * `versions`; null when it has neither record nor versions.
 */
export async function readAccess(
  kv: Deno.Kv,
  name: string,
  versions: DataVersionRecord[],
): Promise<DataSetAccess | null> {
  const rec = (await kv.get<DataSetRecord>(dataSetKey(name))).value;
  if (rec) return { ...rec, legacy: false };
  const oldest = versions.at(-1);
  if (!oldest) return null;
  return { name, owner: oldest.owner, shared: true, createdAt: oldest.createdAt, legacy: true };
}

/** Whether `by` may see and use the data set. */
export function mayUse(access: DataSetAccess, by: DataCaller | undefined): boolean {
  return !by || by.admin || access.shared || access.owner === by.user;
}

/** Whether `by` may add versions to the data set. */
export function mayAddVersions(access: DataSetAccess, by: DataCaller | undefined): boolean {
  return !by || by.admin || access.owner === by.user || access.legacy;
}

/** Whether `by` may change whether the data set is shared. */
export function mayShare(access: DataSetAccess, by: DataCaller | undefined): boolean {
  return !by || by.admin || access.owner === by.user;
}

/** The record to store, from an access (dropping `legacy`). */
export function accessRecord(access: DataSetAccess): DataSetRecord {
  const { legacy: _, ...rec } = access;
  return rec;
}

/**
 * Refuses a put by `by` to a data set with `access` (null: a new one) that
 * `by` may not add versions to, or whose sharing `by` may not change.
 *
 * @throws {ConflictError} `data_set_name_taken` when `by` may not see it.
 * @throws {AuthError} `forbidden` when `by` may see it but not add to it or change its sharing.
 */
export function mayPut(name: string, access: DataSetAccess | null, by: DataCaller, shared: boolean | undefined): void {
  if (!access) return;
  if (!mayUse(access, by)) {
    throw new ConflictError(
      `Cannot store data set '${name}' as another user's data set, not shared with you, has that name: choose another`,
      { code: "data_set_name_taken" },
    );
  }
  if (!mayAddVersions(access, by)) {
    throw new AuthError(
      `Cannot store a version of data set '${name}' as it belongs to '${access.owner}': only its owner or an admin may`,
      { code: "forbidden" },
    );
  }
  if (shared !== undefined && shared !== access.shared && !mayShare(access, by)) {
    throw new AuthError(
      `Cannot change whether data set '${name}' is shared as it belongs to '${access.owner}': only its owner or an admin may`,
      { code: "forbidden" },
    );
  }
}
