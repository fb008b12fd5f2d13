/**
 * Listing, sharing and deleting data sets and their versions. A version a
 * live task uses is not deleted; deleting one frees the content no other
 * version needs.
 *
 * @module
 */
import { AuthError, ConflictError, NotFoundError } from "../../core/errors.ts";
import type { DataSetView, DataVersion, DataVersionRecord } from "../../core/schema.ts";
import { DATA_VERSIONS, dataBytesKey, dataSetKey, dataVersionKey } from "../../core/kv.ts";
import { accessRecord, type DataCaller, type DataSetAccess, mayShare, mayUse } from "./access.ts";
import { accessOf, match, refreshBytes, short, visible } from "./catalog.ts";
import { sweep } from "./gc.ts";
import { CATALOG, type DataState } from "./state.ts";
import { liveUsers } from "./uses.ts";

const view = async (
  s: DataState,
  name: string,
  versions: DataVersionRecord[],
  access: DataSetAccess,
): Promise<DataSetView> => ({
  name,
  owner: access.owner,
  shared: access.shared,
  versions,
  bytes: (await s.kv.get<number>(dataBytesKey(name))).value ?? 0,
});

/** Every data set `by` may see, with its versions newest first. */
export async function list(s: DataState, by?: DataCaller): Promise<DataSetView[]> {
  const byName = new Map<string, DataVersionRecord[]>();
  for await (const e of s.kv.list<DataVersionRecord>({ prefix: DATA_VERSIONS })) {
    const list = byName.get(e.value.name) ?? [];
    list.push(e.value);
    byName.set(e.value.name, list);
  }
  const views = await Promise.all(
    [...byName].sort(([a], [b]) => a < b ? -1 : 1).map(async ([name, vs]) => {
      vs.sort((a, b) => b.putAt - a.putAt);
      const access = (await accessOf(s, name, vs))!;
      return mayUse(access, by) ? await view(s, name, vs, access) : null;
    }),
  );
  return views.filter((v) => v !== null);
}

/** One data set. @throws {NotFoundError} When there is none that `by` may see. */
export async function get(s: DataState, name: string, by?: DataCaller): Promise<DataSetView> {
  const { versions, access } = await visible(s, name, by);
  return await view(s, name, versions, access);
}

/** Sets whether a data set is shared (see `DataService.share`). */
export async function share(s: DataState, name: string, shared: boolean, by?: DataCaller): Promise<DataSetView> {
  const { kv, log, locks } = s;
  return await locks.run(CATALOG, async () => {
    const { versions, access } = await visible(s, name, by);
    if (!mayShare(access, by)) {
      throw new AuthError(
        `Cannot change whether data set '${name}' is shared as it belongs to '${access.owner}': only its owner or an admin may`,
        { code: "forbidden" },
      );
    }
    const next = { ...access, shared, legacy: false };
    await kv.set(dataSetKey(name), accessRecord(next));
    log.info("data:shared", { name, shared, by: by?.user });
    return await view(s, name, versions, next);
  });
}

/** Deletes a version or every version of a data set, then sweeps (see `DataService.remove`). */
export async function remove(
  s: DataState,
  name: string,
  ref?: string,
  by?: DataCaller,
): Promise<{ removed: DataVersion[]; freedBytes: number }> {
  const { kv, log, locks } = s;
  const removed = await locks.run(CATALOG, async () => {
    const { versions } = await visible(s, name, by);
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
      const users = await liveUsers(s, v.version);
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
    await refreshBytes(s, name);
    log.info("data:removed", { name, versions: targets.map((v) => v.version) });
    return targets.map((v) => v.version);
  });
  const { freedBytes } = await sweep(s);
  return { removed, freedBytes };
}
