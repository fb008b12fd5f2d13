/**
 * Instance outputs: what an instance left in `PARALLELIC_OUTPUT` and what
 * the task's `[outputs] paths` globs match in its workdir, stored as one tar
 * object per instance in the task's workspace; and the whole workspace,
 * fetched for finalize.
 *
 * @module
 */
import { join } from "node:path";
import { ValidationError } from "../core/errors.ts";
import { globToRegExp } from "../core/glob.js";
import type { ObjectAccess } from "../core/objects.ts";
import { outputObject } from "../core/schema.ts";
import { extractTar, type TarSource, tarStream } from "../core/tar.ts";

/** True when `dir` is a folder with nothing in it (false when it is missing or unreadable). */
export function isEmptyDir(dir: string): boolean {
  try {
    for (const _ of Deno.readDirSync(dir)) return false;
    return true;
  } catch {
    return false;
  }
}

/** Lists the regular files under `dir` (symlinks are not followed), as paths relative to it. */
async function* walk(dir: string, rel = ""): AsyncGenerator<{ rel: string; abs: string }> {
  const items: Deno.DirEntry[] = [];
  try {
    for await (const item of Deno.readDir(rel ? join(dir, rel) : dir)) items.push(item);
  } catch {
    return;
  }
  items.sort((a, b) => a.name < b.name ? -1 : 1);
  for (const item of items) {
    const path = rel ? `${rel}/${item.name}` : item.name;
    if (item.isDirectory) yield* walk(dir, path);
    else if (item.isFile) yield { rel: path, abs: join(dir, path) };
  }
}

/**
 * A file to store, or null when it is no longer a file. With `ownerUid`,
 * only a file of that user is taken, checked again on the file opened: a
 * process of the instance may swap a file or a folder on the way for a
 * symlink between the walk and the read, and a node run as root must not
 * read for it what it could not read itself (the node's key, another task's
 * files).
 */
async function source(rel: string, abs: string, ownerUid?: number): Promise<TarSource | null> {
  const notOwn = (uid: number | null) =>
    new ValidationError(
      `Cannot store output '${rel}' as it is not the instance's own file (owner uid ${uid}, not ${ownerUid})`,
      { code: "output_not_own" },
    );
  const stat = await Deno.lstat(abs);
  if (!stat.isFile) return null;
  if (ownerUid !== undefined && stat.uid !== ownerUid) throw notOwn(stat.uid);
  return {
    path: rel,
    size: stat.size,
    mode: stat.mode ?? 0o644,
    mtimeSec: Math.floor((stat.mtime?.getTime() ?? 0) / 1000),
    open: async () => {
      const file = await Deno.open(abs);
      if (ownerUid === undefined) return file.readable;
      const opened = await file.stat();
      if (opened.uid === ownerUid && opened.ino === stat.ino) return file.readable;
      file.close();
      throw notOwn(opened.uid);
    },
  };
}

/**
 * Collects an instance's outputs: every file under `outputDir`, then every
 * file under `workdir` that one of `globs` matches (a path found in both
 * is taken from `outputDir`). With `ownerUid` (the user instances run as),
 * a file of anyone else fails the collection.
 */
export async function collectOutputs(
  outputDir: string,
  workdir: string,
  globs: readonly string[],
  ownerUid?: number,
): Promise<TarSource[]> {
  const found = new Map<string, TarSource>();
  const add = async (rel: string, abs: string) => {
    const s = await source(rel, abs, ownerUid);
    if (s) found.set(rel, s);
  };
  for await (const { rel, abs } of walk(outputDir)) await add(rel, abs);
  if (globs.length > 0) {
    const patterns = globs.map((g) => globToRegExp(g));
    for await (const { rel, abs } of walk(workdir)) {
      if (!found.has(rel) && patterns.some((p) => p.test(rel))) await add(rel, abs);
    }
  }
  return [...found.values()];
}

/**
 * Stores outputs as the workspace object of instance `index` (or finalize)
 * of a task, unless a later attempt already stored its own; with no outputs,
 * removes what an earlier attempt stored. Returns the bytes stored.
 */
export async function storeOutputs(
  bucket: ObjectAccess,
  taskId: string,
  index: number | "finalize",
  attempt: number,
  sources: TarSource[],
): Promise<number> {
  const name = outputObject(taskId, index);
  // The first attempt with nothing to store need not look: nothing can be there yet.
  if (sources.length === 0 && attempt === 0) return 0;
  const existing = await bucket.info(name);
  const theirs = Number(existing?.metadata?.attempt ?? -1);
  if (existing && theirs > attempt) return 0;
  if (sources.length === 0) {
    if (existing) await bucket.delete(name);
    return 0;
  }
  const info = await bucket.put(name, tarStream(sources), { attempt: String(attempt), files: String(sources.length) });
  return info.size;
}

/**
 * Fetches the outputs of instances 0 to `instances - 1` of a task into
 * `dir/<index>/` (instances without outputs get no folder). Returns the
 * number of files.
 */
export async function fetchWorkspace(
  bucket: ObjectAccess,
  taskId: string,
  instances: number,
  dir: string,
  concurrency = 4,
): Promise<number> {
  await Deno.mkdir(dir, { recursive: true });
  let next = 0;
  let files = 0;
  await Promise.all(Array.from({ length: Math.min(concurrency, instances) }, async () => {
    for (let i = next++; i < instances; i = next++) {
      const read = await bucket.read(outputObject(taskId, i));
      if (!read) continue;
      const got = await extractTar(read.body, join(dir, String(i)), `outputs of instance ${i}`);
      files += got.files;
    }
  }));
  return files;
}
