/**
 * The node's package cache: each package digest is fetched from the object
 * store and unpacked once; every instance then gets its own copy of the
 * unpacked task root.
 *
 * @module
 */
import type { ObjectStore } from "@nats-io/obj";
import { join } from "node:path";
import { unpackPackage } from "../core/package.ts";
import { UnavailableError } from "../core/errors.ts";
import type { Digest } from "../core/schema.ts";

/** A package cache under `dir`. */
export interface PackageCache {
  /** Returns the folder holding the unpacked task root of `digest`, fetching it once. */
  root(digest: Digest, entrypoint: string): Promise<string>;
  /** How many packages were fetched from the object store (for tests and metrics). */
  readonly fetches: number;
}

/** Creates a package cache that fetches from `store()`. */
export function createPackageCache(dir: string, store: () => Promise<ObjectStore>): PackageCache {
  const pending = new Map<string, Promise<string>>();
  let fetches = 0;
  const fetch = async (digest: Digest, entrypoint: string): Promise<string> => {
    const root = join(dir, digest);
    try {
      await Deno.stat(join(dir, `${digest}.ok`));
      return root;
    } catch { /* not cached yet */ }
    const bytes = await (await store()).getBlob(digest);
    if (!bytes) {
      throw new UnavailableError(`Cannot fetch package ${digest} as the object store does not hold it`, {
        code: "package_missing",
      });
    }
    fetches++;
    const tmp = `${root}.tmp-${crypto.randomUUID().slice(0, 8)}`;
    await unpackPackage(bytes, tmp, entrypoint);
    await Deno.remove(root, { recursive: true }).catch(() => {});
    await Deno.rename(tmp, root);
    await Deno.writeTextFile(join(dir, `${digest}.ok`), "");
    return root;
  };
  return {
    root(digest, entrypoint) {
      let p = pending.get(digest);
      if (!p) {
        p = fetch(digest, entrypoint);
        pending.set(digest, p);
        p.catch(() => pending.delete(digest));
      }
      return p;
    },
    get fetches() {
      return fetches;
    },
  };
}

/** Copies a folder tree (files keep their mode; symlinks stay symlinks). */
export async function copyTree(src: string, dst: string): Promise<void> {
  await Deno.mkdir(dst, { recursive: true });
  const work: Promise<void>[] = [];
  for await (const item of Deno.readDir(src)) {
    const from = join(src, item.name);
    const to = join(dst, item.name);
    if (item.isSymlink) work.push(Deno.readLink(from).then((t) => Deno.symlink(t, to)));
    else if (item.isDirectory) work.push(copyTree(from, to));
    else work.push(Deno.copyFile(from, to));
  }
  await Promise.all(work);
}
