/**
 * The node's package cache: each package digest is fetched from the object
 * store and unpacked once; every instance then gets its own copy of the
 * unpacked task root.
 *
 * @module
 */
import type { ObjectAccess } from "../core/objects.ts";
import { join } from "node:path";
import { DEFAULT_PACKAGE_LIMITS, unpackPackageFile } from "../core/package.ts";
import { UnavailableError } from "../core/errors.ts";
import type { Digest } from "../core/schema.ts";
import { type CacheBudget, type Cached, createCacheBudget } from "./cache_budget.ts";

/** An unpacked package held by one user (while its root is copied). */
export interface PackageLease {
  /** The folder holding the unpacked task root. */
  root: string;
  /** Lets the cache evict it again. */
  release(): void;
}

/** A package cache under `dir`. */
export interface PackageCache {
  /** Returns the unpacked task root of `digest` (fetching it once), held until `release()`. */
  acquire(digest: Digest, entrypoint: string | null): Promise<PackageLease>;
  /** How many packages were fetched from the object store (for tests and metrics). */
  readonly fetches: number;
}

/** A cached package; `<digest>.ok` (holding its size in bytes) marks it complete. */
interface Entry extends Cached {
  ready: Promise<string>;
}

/**
 * Creates a package cache that fetches from `store()` (streamed to a file
 * beside the cache, never held whole in memory, unpacked from there), counting what it keeps
 * in `budget` (shared with the data cache): least recently used packages that
 * no instance is being set up from are evicted to make room. Packages a
 * previous run unpacked are picked up.
 */
export async function createPackageCache(
  dir: string,
  store: () => Promise<ObjectAccess>,
  budget: CacheBudget = createCacheBudget(Infinity),
): Promise<PackageCache> {
  const entries = new Map<string, Entry>();
  let fetches = 0;
  const entryOf = (digest: string, bytes: number, lastUsed: number, ready: Promise<string>): Entry => {
    const entry: Entry = {
      bytes,
      users: 0,
      lastUsed,
      ready,
      async evict() {
        if (entries.get(digest) === entry) entries.delete(digest);
        // Unmarked first: a crash meanwhile leaves a folder that is fetched again, never half a package.
        await Deno.remove(join(dir, `${digest}.ok`)).catch(() => {});
        await Deno.remove(join(dir, digest), { recursive: true }).catch(() => {});
      },
    };
    return entry;
  };
  await Deno.mkdir(dir, { recursive: true });
  for await (const item of Deno.readDir(dir)) {
    const digest = /^(sha256-[0-9a-f]{64})\.ok$/.exec(item.name)?.[1];
    if (!digest) continue;
    const root = join(dir, digest);
    const text = (await Deno.readTextFile(join(dir, item.name))).trim();
    // Marks written before packages were counted are empty: measured once.
    const bytes = /^\d+$/.test(text) ? Number(text) : (await planTree(root).catch(() => ({ bytes: 0 }))).bytes;
    const entry = entryOf(
      digest,
      bytes,
      (await Deno.stat(join(dir, item.name))).mtime?.getTime() ?? 0,
      Promise.resolve(root),
    );
    entries.set(digest, entry);
    budget.add(entry);
  }

  const fetch = async (digest: Digest, entrypoint: string | null): Promise<string> => {
    const root = join(dir, digest);
    const read = await (await store()).read(digest);
    if (!read) {
      throw new UnavailableError(`Cannot fetch package ${digest} as the object store does not hold it`, {
        code: "package_missing",
      });
    }
    fetches++;
    const tmp = `${root}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    const zipFile = `${tmp}.zip`;
    try {
      // The read checks the object's SHA-256 at its end: a corrupt or cut-short package errors here.
      await read.body.pipeTo((await Deno.open(zipFile, { write: true, createNew: true, mode: 0o600 })).writable);
      const size = read.info.size;
      // The manager checked its size against its own --max-package-size; every other check is made again here.
      const limits = {
        ...DEFAULT_PACKAGE_LIMITS,
        maxPackageBytes: Math.max(DEFAULT_PACKAGE_LIMITS.maxPackageBytes, size),
      };
      await unpackPackageFile(zipFile, tmp, entrypoint, limits);
    } catch (e) {
      await Deno.remove(tmp, { recursive: true }).catch(() => {});
      throw e;
    } finally {
      await Deno.remove(zipFile).catch(() => {});
    }
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, root);
    const size = (await planTree(root)).bytes;
    const entry = entries.get(digest);
    if (entry) {
      entry.bytes = size;
      await budget.makeRoom(size);
      budget.add(entry);
    }
    await Deno.writeTextFile(join(dir, `${digest}.ok`), String(size));
    return root;
  };
  return {
    async acquire(digest, entrypoint) {
      let entry = entries.get(digest);
      if (!entry) {
        const fresh = entryOf(digest, 0, Date.now(), Promise.resolve(""));
        entries.set(digest, entry = fresh);
        fresh.ready = fetch(digest, entrypoint);
        fresh.ready.catch(() => {
          if (entries.get(digest) === fresh) entries.delete(digest);
        });
      }
      const held = entry;
      const release = budget.hold(held);
      try {
        return { root: await held.ready, release };
      } catch (e) {
        release();
        throw e;
      }
    },
    get fetches() {
      return fetches;
    },
  };
}

/** What a folder tree holds, listed once so that copies need no listing. */
export interface TreePlan {
  dirs: string[];
  files: string[];
  links: Array<[string, string]>;
  /** Total size of the files. */
  bytes: number;
}

/**
 * Trees up to this size and count are copied with synchronous calls: the
 * event loop waits well under a millisecond, and the copy needs no round trips
 * to the thread pool on the way to the spawn.
 */
export const SMALL_TREE = { bytes: 256 * 1024, entries: 16 };

/** Lists a folder tree (relative paths, parents before children). */
export async function planTree(
  src: string,
  rel = "",
  plan: TreePlan = { dirs: [], files: [], links: [], bytes: 0 },
): Promise<TreePlan> {
  for await (const item of Deno.readDir(rel ? join(src, rel) : src)) {
    const path = rel ? `${rel}/${item.name}` : item.name;
    if (item.isSymlink) plan.links.push([path, await Deno.readLink(join(src, path))]);
    else if (item.isDirectory) {
      plan.dirs.push(path);
      await planTree(src, path, plan);
    } else {
      plan.files.push(path);
      plan.bytes += (await Deno.stat(join(src, path))).size;
    }
  }
  return plan;
}

const plans = new Map<string, Promise<TreePlan>>();

/** The listing of the folder tree `src`, made once (package roots do not change once unpacked). */
export function cachedPlan(src: string): Promise<TreePlan> {
  let plan = plans.get(src);
  if (!plan) {
    plans.set(src, plan = planTree(src));
    plan.catch(() => plans.delete(src));
  }
  return plan;
}

/** True when a tree is small enough to be copied (and checked) with synchronous calls. */
export const isSmallTree = (plan: TreePlan): boolean =>
  plan.bytes <= SMALL_TREE.bytes && plan.dirs.length + plan.files.length + plan.links.length <= SMALL_TREE.entries;

/** Copies a folder tree (files keep their mode; symlinks stay symlinks). The tree's listing is cached. */
export async function copyTree(src: string, dst: string): Promise<void> {
  const plan = await cachedPlan(src);
  const { dirs, files, links } = plan;
  if (isSmallTree(plan)) {
    Deno.mkdirSync(dst, { recursive: true });
    for (const d of dirs) Deno.mkdirSync(join(dst, d));
    for (const f of files) Deno.copyFileSync(join(src, f), join(dst, f));
    for (const [path, target] of links) Deno.symlinkSync(target, join(dst, path));
    return;
  }
  await Deno.mkdir(dst, { recursive: true });
  for (const d of dirs) await Deno.mkdir(join(dst, d));
  await Promise.all([
    ...files.map((f) => Deno.copyFile(join(src, f), join(dst, f))),
    ...links.map(([path, target]) => Deno.symlink(target, join(dst, path))),
  ]);
}
