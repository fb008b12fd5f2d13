/**
 * Run dirs: each instance runs in a private copy of its task root, beside an
 * output folder and the files its standard output and error go to.
 *
 * Making a copy and removing it costs ext4 about 0.6 ms of CPU per instance
 * here (a folder, its files, journaled twice), as much as the process itself.
 * So a copy its instance left untouched is kept for the next instance of the
 * same package: when the copy is made, every entry's modification time gets
 * a nanosecond value no write can produce (the package's second, and a
 * nanosecond count of our own per entry); when the instance has ended and no
 * process of its group is left, the copy is kept only if every entry still
 * has the inode, mode, owner, link count, size and modification time it had
 * (a write, a truncation, a new or removed or renamed entry, a chmod or chown
 * each change one of them), and its output folder is empty. Anything else,
 * and copies of larger trees (see `SMALL_TREE`), are removed as before.
 *
 * Without {@linkcode Libc} (no nanosecond times), nothing is kept.
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../core/log.ts";
import { cachedPlan, copyTree, isSmallTree } from "./cache.ts";
import type { FileStamp, Libc } from "./libc.ts";
import { isEmptyDir } from "./outputs.ts";
import { giveDir, handOver, type RunAs } from "./run_as.ts";

/** Where one instance runs. */
export interface RunDir {
  /** Its private copy of the task root. */
  dir: string;
  /** Its output folder (`PARALLELIC_OUTPUT`), empty when handed out. */
  outputDir: string;
  /** Where its standard output and error go (spawns through {@linkcode Libc}). */
  stdoutPath: string;
  stderrPath: string;
  /** True when this copy ran an instance before. */
  reused: boolean;
}

/** Hands out run dirs, keeping untouched ones for reuse. */
export interface RunDirs {
  /**
   * A run dir holding a pristine copy of `root`: a kept one, or a new copy.
   * With `owner` (default: the `runAs` option), it is made in the owner's
   * folder (`RunAs.dir`, else the runs folder) and given to them; kept
   * copies go only to the same owner.
   */
  take(root: string, owner?: RunAs | null): Promise<RunDir>;
  /**
   * Takes a run dir back once nothing of its instance runs any more. With
   * `reusable` (the instance ended by itself and left no process behind), a
   * copy still untouched is kept for the next instance of `root`; otherwise
   * it is removed.
   */
  release(runDir: RunDir, reusable: boolean): void;
  /**
   * True when the copy in use is provably as it was handed out: no entry
   * written, added, removed or renamed, and its output folder empty. False
   * when it changed or cannot be checked (a large tree, no {@linkcode Libc}).
   * A true answer stands for its release too (checked once).
   */
  unchanged(runDir: RunDir): boolean;
  /** Removes the kept copies in `dir` (an owner's folder about to be removed). */
  forget(dir: string): void;
  /** Copies made and copies reused so far. */
  readonly counts: { made: number; reused: number };
}

/** Options of {@linkcode createRunDirs}. */
export interface RunDirsOptions {
  /** The node's runs folder. */
  dir: string;
  libc: Libc | null;
  runAs: RunAs | null;
  /** How many untouched copies to keep at most (across packages). */
  spare: number;
  log: Logger;
}

/** Nanosecond values of the modification times given to a copy's entries (entry i gets SENTINEL_NS - i). */
const SENTINEL_NS = 987_654_321;
/** Nanoseconds of the output folder's modification time while it is known to be empty. */
const OUT_SENTINEL_NS = 123_456_789;

interface Kept {
  root: string;
  /** What a copy is kept under: its owner's folder and its root. */
  key: string;
  runDir: RunDir;
  /** Each entry's path and stamp, for the check; null when the copy is not checked (so never kept). */
  stamps: Array<[string, FileStamp]> | null;
  /** The output folder's stamp (only its mode and owner count: its contents are checked to be empty). */
  outStamp: FileStamp | null;
  /** Stamps of the output files when the copy was kept: a change means a process of the last instance lives on. */
  logStamps?: Array<FileStamp | null>;
  /** Found untouched after its instance ended (see `RunDirs.unchanged`): not checked again at its release. */
  checked?: boolean;
}

const sameStamp = (a: FileStamp, b: FileStamp | null) =>
  b !== null && a.ino === b.ino && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid &&
  a.nlink === b.nlink && a.size === b.size && a.mtimeSec === b.mtimeSec && a.mtimeNs === b.mtimeNs &&
  a.ctimeSec === b.ctimeSec && a.ctimeNs === b.ctimeNs;

/** Creates the run dirs of a node, under `options.dir`. */
export function createRunDirs(options: RunDirsOptions): RunDirs {
  const { libc, runAs, log } = options;
  const inUse = new Map<string, Kept>();
  const spare = new Map<string, Kept[]>();
  let spareCount = 0;
  let serial = 0;
  const counts = { made: 0, reused: 0 };

  const remove = (runDir: RunDir) => {
    void Promise.all([
      Deno.remove(runDir.dir, { recursive: true }).catch(() => {}),
      Deno.remove(runDir.outputDir, { recursive: true }).catch(() => {}),
      Deno.remove(runDir.stdoutPath).catch(() => {}),
      Deno.remove(runDir.stderrPath).catch(() => {}),
    ]);
  };

  /** Gives a fresh copy's entries their sentinel times and notes their stamps. */
  const stampCopy = async (root: string, dir: string): Promise<Array<[string, FileStamp]> | null> => {
    if (!libc) return null;
    const plan = await cachedPlan(root);
    if (!isSmallTree(plan)) return null;
    // Children before their folders: setting a file's time does not change its folder's, but creating one does.
    const entries = [...plan.files, ...plan.links.map(([path]) => path), ...plan.dirs.toReversed(), ""];
    const stamps: Array<[string, FileStamp]> = [];
    try {
      entries.forEach((rel, i) => {
        const path = rel ? join(dir, rel) : dir;
        const original = libc.stamp(rel ? join(root, rel) : root);
        libc.setMtime(path, original?.mtimeSec ?? 0n, SENTINEL_NS - i);
      });
    } catch {
      return null; // Not checkable (a file system without nanosecond times?): used once, never kept.
    }
    for (const rel of entries) {
      const path = rel ? join(dir, rel) : dir;
      const stamp = libc.stamp(path);
      if (!stamp) return null;
      stamps.push([path, stamp]);
    }
    return stamps;
  };

  const logStamps = (
    kept: Kept,
  ) => [libc?.stamp(kept.runDir.stdoutPath) ?? null, libc?.stamp(kept.runDir.stderrPath) ?? null];
  const sameLogs = (kept: Kept) =>
    logStamps(kept).every((now, i) => {
      const then = kept.logStamps?.[i] ?? null;
      return now === null ? then === null : sameStamp(now, then);
    });

  const untouched = (kept: Kept): boolean => {
    if (!libc || !kept.stamps) return false;
    for (const [path, stamp] of kept.stamps) if (!sameStamp(stamp, libc.stamp(path))) return false;
    const out = libc.stamp(kept.runDir.outputDir);
    if (!out || !kept.outStamp || out.mode !== kept.outStamp.mode || out.uid !== kept.outStamp.uid) return false;
    // Unchanged since it was last seen empty: nothing was created in it. Else it must be empty now.
    if (sameStamp(out, kept.outStamp)) return true;
    if (!isEmptyDir(kept.runDir.outputDir)) return false;
    // Its time set again to one no write makes, so that the next instance's first output changes it.
    try {
      libc.setMtime(kept.runDir.outputDir, 0n, OUT_SENTINEL_NS);
    } catch {
      return false;
    }
    kept.outStamp = libc.stamp(kept.runDir.outputDir);
    return true;
  };

  return {
    async take(root, owner = runAs) {
      const parent = owner?.dir ?? options.dir;
      const key = `${parent}\n${root}`;
      const list = spare.get(key);
      for (let kept = list?.pop(); kept; kept = list?.pop()) {
        spareCount--;
        // Checked again: a process of the last instance that left its group (setsid) may have written into the
        // copy or its output files since. (Output files are reused, truncated: new ones would cost ext4 as much
        // as a copy.)
        if (!untouched(kept) || !sameLogs(kept)) {
          log.debug("node:run-dir-changed", { dir: kept.runDir.dir, after: "release" });
          remove(kept.runDir);
          continue;
        }
        if (list?.length === 0) spare.delete(key);
        counts.reused++;
        inUse.set(kept.runDir.dir, kept);
        return { ...kept.runDir, reused: true };
      }
      if (list?.length === 0) spare.delete(key);
      const dir = join(parent, `c${++serial}`);
      const runDir: RunDir = {
        dir,
        outputDir: `${dir}.out`,
        stdoutPath: `${dir}.stdout`,
        stderrPath: `${dir}.stderr`,
        reused: false,
      };
      try {
        await copyTree(root, dir);
        await Deno.mkdir(runDir.outputDir);
        if (owner) {
          await handOver(owner, dir);
          await giveDir(owner, runDir.outputDir);
        }
        const stamps = await stampCopy(root, dir);
        let outStamp: FileStamp | null = null;
        if (stamps && libc) {
          libc.setMtime(runDir.outputDir, 0n, OUT_SENTINEL_NS);
          outStamp = libc.stamp(runDir.outputDir);
        }
        counts.made++;
        inUse.set(dir, { root, key, runDir, stamps, outStamp });
        return runDir;
      } catch (e) {
        remove(runDir);
        throw e;
      }
    },

    unchanged(runDir) {
      const kept = inUse.get(runDir.dir);
      if (!kept || !untouched(kept)) return false;
      kept.checked = true;
      return true;
    },

    release(runDir, reusable) {
      const kept = inUse.get(runDir.dir);
      inUse.delete(runDir.dir);
      const clean = kept?.checked || (kept !== undefined && untouched(kept));
      if (kept) kept.checked = false;
      if (!kept || !reusable || !clean) {
        if (kept && reusable && kept.stamps) log.debug("node:run-dir-changed", { dir: runDir.dir });
        remove(runDir);
        return;
      }
      if (spareCount >= options.spare) {
        // Full: a spare of another package makes room (packages of finished tasks go first), else this one goes.
        const other = [...spare].find(([key, list]) => key !== kept.key && list.length > 0);
        if (!other) return remove(runDir);
        remove(other[1].shift()!.runDir);
        if (other[1].length === 0) spare.delete(other[0]);
        spareCount--;
      }
      kept.logStamps = logStamps(kept);
      const list = spare.get(kept.key);
      if (list) list.push(kept);
      else spare.set(kept.key, [kept]);
      spareCount++;
    },

    forget(dir) {
      for (const [key, list] of spare) {
        if (!key.startsWith(`${dir}\n`)) continue;
        spare.delete(key);
        spareCount -= list.length;
        for (const kept of list) remove(kept.runDir);
      }
    },

    counts,
  };
}
