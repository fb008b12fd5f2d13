/**
 * Reading the data catalog: a data set's versions and access from Deno KV,
 * a version's manifest from the bucket, the distinct bytes a data set
 * holds, and which version a reference names.
 *
 * @module
 */
import { distinctBytes, type ManifestFile, parseManifest } from "../../core/data_manifest.ts";
import { NotFoundError, ValidationError } from "../../core/errors.ts";
import { dataManifestObject, type DataVersion, type DataVersionRecord } from "../../core/schema.ts";
import { dataBytesKey, dataVersionsOf } from "../../core/kv.ts";
import { type DataCaller, type DataSetAccess, mayUse, readAccess } from "./access.ts";
import type { DataState } from "./state.ts";

/** A version cut short for messages. */
export const short = (version: string): string => `${version.slice(0, 19)}…`;

/** The versions of data set `name`, newest first. */
export const versionsOf = async (s: DataState, name: string): Promise<DataVersionRecord[]> => {
  const out: DataVersionRecord[] = [];
  for await (const e of s.kv.list<DataVersionRecord>({ prefix: dataVersionsOf(name) })) out.push(e.value);
  return out.sort((a, b) => b.putAt - a.putAt);
};

/** The access of data set `name` (its versions read unless given); null when it has neither record nor versions. */
export const accessOf = async (
  s: DataState,
  name: string,
  versions?: DataVersionRecord[],
): Promise<DataSetAccess | null> => await readAccess(s.kv, name, versions ?? await versionsOf(s, name));

/** The versions and access of a data set `by` may see. @throws {NotFoundError} */
export async function visible(
  s: DataState,
  name: string,
  by: DataCaller | undefined,
): Promise<{ versions: DataVersionRecord[]; access: DataSetAccess }> {
  const versions = await versionsOf(s, name);
  const access = await accessOf(s, name, versions);
  if (versions.length === 0 || !access || !mayUse(access, by)) {
    throw new NotFoundError(`Data set '${name}' does not exist`, { code: "data_set_not_found" });
  }
  return { versions, access };
}

/** The files of a version, from its manifest. @throws {NotFoundError} When the manifest is missing. */
export const readManifest = async (s: DataState, version: DataVersion): Promise<ManifestFile[]> => {
  const read = await s.bucket.read(dataManifestObject(version));
  if (!read) {
    throw new NotFoundError(`Manifest of data set version ${version} is missing`, { code: "manifest_missing" });
  }
  return parseManifest(await new Response(read.body).text(), version);
};

/** Recomputes the bytes of distinct content a data set holds (under the catalog lock). */
export const refreshBytes = async (s: DataState, name: string): Promise<void> => {
  const versions = await versionsOf(s, name);
  if (versions.length === 0) return await s.kv.delete(dataBytesKey(name));
  const manifests = await Promise.all(versions.map((v) => readManifest(s, v.version)));
  await s.kv.set(dataBytesKey(name), distinctBytes(manifests));
};

/** The version of `versions` that `ref` (a full version or prefix) names; null when none; throws when ambiguous. */
export const match = (name: string, versions: DataVersionRecord[], ref: string): DataVersionRecord | null => {
  const found = versions.filter((v) => v.version.startsWith(ref));
  if (found.length > 1) {
    throw new ValidationError(
      `Version '${ref}' of data set '${name}' is ambiguous: it starts ${found.length} versions; give more digits`,
      { code: "ambiguous_version" },
    );
  }
  return found[0] ?? null;
};
