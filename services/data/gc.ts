/**
 * Collecting what no version needs: content blobs, manifests, and
 * temporary objects of uploads that are over. Content an upload in progress
 * has stored is pinned in memory, so a sweep never takes it away before the
 * upload commits.
 *
 * @module
 */
import { dataManifestObject, type DataVersionRecord } from "../../core/schema.ts";
import { DATA_VERSIONS } from "../../core/kv.ts";
import { readManifest } from "./catalog.ts";
import { CATALOG, type DataState } from "./state.ts";

/** Deletes content, manifests and temporary objects that no version needs. */
export async function sweep(s: DataState): Promise<{ objects: number; freedBytes: number }> {
  const { kv, log, bucket, locks, uploads } = s;
  return await locks.run(CATALOG, async () => {
    const manifests = new Set<string>();
    const live = new Set<string>();
    for await (const e of kv.list<DataVersionRecord>({ prefix: DATA_VERSIONS })) {
      if (manifests.has(dataManifestObject(e.value.version))) continue;
      manifests.add(dataManifestObject(e.value.version));
      for (const f of await readManifest(s, e.value.version)) live.add(f.sha256);
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
