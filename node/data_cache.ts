/**
 * The node's data-set cache: each data set version is fetched from the
 * object store once (concurrent requests for it share one fetch), kept as a
 * read-only folder, and shared by every instance that uses it. The cache is
 * capped in bytes; when a new version needs room, the least recently used
 * versions that no instance is using are evicted.
 *
 * Layout under `dir`: `<hex>/` (the version's files), `<hex>.json` (its size,
 * written last: a folder without it is an unfinished fetch), `*.tmp-*`
 * (fetches in progress).
 *
 * @module
 */
import { dirname, join } from "node:path";
import { type ManifestFile, parseManifest } from "../core/data_manifest.ts";
import { TooLargeError, UnavailableError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { ObjectAccess } from "../core/objects.ts";
import { dataBlobObject, dataManifestObject, type DataVersion } from "../core/schema.ts";
import { type CacheBudget, type Cached, createCacheBudget } from "./cache_budget.ts";
import { lockTree, removeTree } from "./readonly.ts";

/** A data set version in use by one instance. */
export interface DataLease {
  /** The read-only folder holding the version's files. */
  path: string;
  /** Tells the cache the instance no longer uses it. */
  release(): void;
}

/** The node's data-set cache. */
export interface DataCache {
  /** Returns the folder of `version` (fetching it once), held until `release()`. */
  acquire(name: string, version: DataVersion): Promise<DataLease>;
  /** Versions fetched from the object store since start (for tests and metrics). */
  readonly fetches: number;
  /** Bytes the cached versions take. */
  readonly bytes: number;
}

/** Options of {@linkcode createDataCache}. */
export interface DataCacheOptions {
  /** Folder of the cache. */
  dir: string;
  /** Most bytes kept; a version larger than this cannot be used on this node. */
  capBytes: number;
  /** Opens the data bucket. */
  bucket: () => Promise<ObjectAccess>;
  log: Logger;
  /** Files fetched at once. @default {4} */
  concurrency?: number;
  /** The byte budget shared with the package cache. @default {a budget of `capBytes` of its own} */
  budget?: CacheBudget;
}

interface Entry extends Cached {
  version: DataVersion;
  ready: Promise<void>;
}

const hexOf = (version: string) => version.slice("sha256:".length);

/** Creates the cache, picking up versions fetched before a restart. */
export async function createDataCache(options: DataCacheOptions): Promise<DataCache> {
  const { dir, capBytes, log } = options;
  const concurrency = options.concurrency ?? 4;
  const entries = new Map<string, Entry>();
  const budget = options.budget ?? createCacheBudget(capBytes);
  let fetches = 0;
  const entryOf = (version: DataVersion, bytes: number, lastUsed: number): Entry => {
    const entry: Entry = {
      version,
      bytes,
      users: 0,
      lastUsed,
      ready: Promise.resolve(),
      evict: (why) => evict(entry, why),
    };
    return entry;
  };
  await Deno.mkdir(dir, { recursive: true });

  // Pick up what a previous run fetched; drop what it left half done.
  const names = new Set<string>();
  for await (const item of Deno.readDir(dir)) names.add(item.name);
  for (const name of names) {
    const path = join(dir, name);
    const done = /^([0-9a-f]{64})$/.exec(name);
    if (done && names.has(`${name}.json`)) {
      try {
        const meta = JSON.parse(await Deno.readTextFile(`${path}.json`)) as { bytes: number };
        const mtime = (await Deno.stat(`${path}.json`)).mtime?.getTime() ?? 0;
        const version = `sha256:${name}` as DataVersion;
        const entry = entryOf(version, meta.bytes, mtime);
        entries.set(version, entry);
        budget.add(entry);
        continue;
      } catch { /* unreadable: drop it */ }
    }
    if (name.endsWith(".json") && names.has(name.slice(0, -5))) continue;
    if (name.endsWith(".json")) await Deno.remove(path).catch(() => {});
    else await removeTree(path);
  }

  async function evict(entry: Entry, why: string) {
    entries.delete(entry.version);
    budget.delete(entry);
    const path = join(dir, hexOf(entry.version));
    await Deno.remove(`${path}.json`).catch(() => {});
    await removeTree(path);
    log.info("node:data-evicted", { version: entry.version, bytes: entry.bytes, why });
  }

  async function download(bucket: ObjectAccess, file: ManifestFile, root: string) {
    const target = join(root, file.path);
    await Deno.mkdir(dirname(target), { recursive: true });
    const read = await bucket.read(dataBlobObject(file.sha256));
    if (!read || read.info.size !== file.size) {
      throw new UnavailableError(`Cannot fetch '${file.path}' as the object store does not hold its content`, {
        code: "data_missing",
      });
    }
    const out = await Deno.open(target, { write: true, createNew: true, mode: 0o644 });
    await read.body.pipeTo(out.writable);
    if (file.mode & 0o111) await Deno.chmod(target, 0o755);
  }

  async function fetchVersion(name: string, entry: Entry) {
    const started = Date.now();
    const bucket = await options.bucket();
    const read = await bucket.read(dataManifestObject(entry.version));
    if (!read) {
      throw new UnavailableError(`Cannot fetch data set '${name}' version ${entry.version} as it was deleted`, {
        code: "data_missing",
      });
    }
    const files = parseManifest(await new Response(read.body).text(), entry.version);
    const bytes = files.reduce((n, f) => n + f.size, 0);
    if (bytes > capBytes) {
      throw new TooLargeError(
        `Cannot use data set '${name}' version ${entry.version} as its size ${bytes} bytes exceeds this node's cache of ${capBytes} bytes (--cache-size)`,
        { code: "data_too_large_for_cache" },
      );
    }
    entry.bytes = bytes;
    await budget.makeRoom(bytes);
    budget.add(entry);
    const final = join(dir, hexOf(entry.version));
    const tmp = `${final}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    try {
      // Each distinct content once; files with the same content are copied locally.
      const first = new Map<string, ManifestFile>();
      const copies: ManifestFile[] = [];
      for (const f of files) first.has(f.sha256) ? copies.push(f) : first.set(f.sha256, f);
      const queue = [...first.values()];
      await Promise.all(Array.from({ length: Math.min(concurrency, queue.length) }, async () => {
        for (let f = queue.shift(); f; f = queue.shift()) await download(bucket, f, tmp);
      }));
      for (const f of copies) {
        const target = join(tmp, f.path);
        await Deno.mkdir(dirname(target), { recursive: true });
        await Deno.copyFile(join(tmp, first.get(f.sha256)!.path), target);
      }
      await Deno.mkdir(tmp, { recursive: true });
      // Renamed first (an immutable folder cannot be moved), locked, then marked done.
      await Deno.rename(tmp, final);
      await lockTree(final, log);
      await Deno.writeTextFile(`${final}.json`, JSON.stringify({ name, version: entry.version, bytes }));
    } catch (e) {
      budget.delete(entry);
      await removeTree(tmp);
      await removeTree(final);
      throw e;
    }
    fetches++;
    log.info("node:data-fetched", {
      name,
      version: entry.version,
      files: files.length,
      bytes,
      ms: Date.now() - started,
    });
  }

  return {
    async acquire(name, version) {
      let entry = entries.get(version);
      if (!entry) {
        const fresh = entryOf(version, 0, Date.now());
        fresh.ready = fetchVersion(name, fresh);
        fresh.ready.catch(() => {
          if (entries.get(version) === fresh) entries.delete(version);
        });
        entries.set(version, entry = fresh);
      }
      const release = budget.hold(entry);
      try {
        await entry.ready;
      } catch (e) {
        release();
        throw e;
      }
      return { path: join(dir, hexOf(version)), release };
    },
    get fetches() {
      return fetches;
    },
    get bytes() {
      return budget.bytes;
    },
  };
}
