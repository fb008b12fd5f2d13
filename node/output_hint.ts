/**
 * The hint for an instance that stored no outputs but wrote files in its
 * workdir: the usual mistake of a first task (writing `out.png` where the
 * program runs rather than under `$PARALLELIC_OUTPUT`), said with the
 * files' names and the fix instead of an empty result.
 *
 * @module
 */
import { join } from "node:path";
import { globToRegExp } from "../core/glob.js";
import { MAX_HINT_CHARS } from "../core/schema.ts";

/** Entries looked at, at most: the hint names a few files, it does not inventory a large tree. */
const MAX_ENTRIES = 500;
/** Files named in the hint. */
const NAMED = 3;
/**
 * Slack on the start time: the kernel stamps files from a coarse clock, which may lag the one the start was read
 * from by a tick.
 */
const CLOCK_SLACK_MS = 50;

/**
 * Files under `workdir` modified since `sinceMs`, as paths relative to it: not those of the package (a path that
 * exists under `packageRoot`), nor those one of `globs` matches (they were stored). Sorted, at most
 * {@linkcode MAX_ENTRIES} entries looked at.
 */
export async function filesWrittenSince(
  workdir: string,
  sinceMs: number,
  packageRoot: string | null,
  globs: readonly string[],
): Promise<string[]> {
  const patterns = globs.map((g) => globToRegExp(g));
  const found: string[] = [];
  let seen = 0;
  const inPackage = async (rel: string) => {
    if (packageRoot === null) return false;
    try {
      await Deno.lstat(join(packageRoot, rel));
      return true;
    } catch {
      return false;
    }
  };
  const walk = async (rel: string): Promise<void> => {
    let items: Deno.DirEntry[];
    try {
      items = await Array.fromAsync(Deno.readDir(rel ? join(workdir, rel) : workdir));
    } catch {
      return;
    }
    items.sort((a, b) => a.name < b.name ? -1 : 1);
    for (const item of items) {
      if (++seen > MAX_ENTRIES) return;
      const path = rel ? `${rel}/${item.name}` : item.name;
      if (item.isDirectory) {
        await walk(path);
        continue;
      }
      if (!item.isFile || patterns.some((p) => p.test(path))) continue;
      const stat = await Deno.lstat(join(workdir, path)).catch(() => null);
      const mtimeMs = stat?.mtime?.getTime() ?? 0;
      if (mtimeMs >= sinceMs - CLOCK_SLACK_MS && !(await inPackage(path))) found.push(path);
    }
  };
  await walk("");
  return found;
}

/**
 * The hint for an instance that stored no outputs but left `files` in its workdir, naming a few of them and the fix;
 * null when it left none.
 */
export function outputHint(files: readonly string[]): string | null {
  if (files.length === 0) return null;
  const named = files.slice(0, NAMED).map((f) => `'${f}'`).join(", ");
  const more = files.length > NAMED ? ` and ${files.length - NAMED} more` : "";
  const hint = `stored no outputs, but wrote ${named}${more} in its workdir: write them under $PARALLELIC_OUTPUT, ` +
    `or add an [outputs] paths glob for them to task.toml`;
  return hint.length <= MAX_HINT_CHARS ? hint : `${hint.slice(0, MAX_HINT_CHARS - 1)}…`;
}
