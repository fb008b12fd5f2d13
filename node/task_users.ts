/**
 * Per-task users (`parallelic node --run-as-range 20000-29999`): a node
 * started as root runs each task's instances as a uid of its own, taken from
 * the range while the task has instances staged or running on the node and
 * returned when it has none (as HTCondor's slot users). The gid is the same
 * number and no supplementary group is kept, so instances of two tasks
 * share neither user nor group.
 *
 * Everything of a task on the node lives in one folder, `runs/u<uid>`,
 * owned by root with group gid and mode 0710: the task's uid may pass, no
 * other task's may. Its run dirs, output folders, HOME and TMPDIR are in it,
 * owned by the uid, mode 0700. When the uid is returned, every process still
 * running as it is killed (a process can leave its group or session, not its
 * uid), the folder is removed, and so is what the uid left in /tmp,
 * /var/tmp and /dev/shm, so that the next task given that uid finds nothing
 * of the last there. When the whole range is in use, instances of a further
 * task wait on the node until a task's uid is returned.
 *
 * @module
 */
import { join } from "node:path";
import { ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { removeTree } from "./readonly.ts";
import { findSetpriv, giveDir, requireRoot, type RunAs } from "./run_as.ts";

/** A range of uids, both ends included. */
export interface UidRange {
  first: number;
  last: number;
}

/** Lowest uid a range may start at: below it live system users. */
const LOWEST_UID = 1000;
/** Highest uid a range may end at (uids are 32-bit, and some tools read them as signed). */
const HIGHEST_UID = 2 ** 31 - 2;
/** Times the processes of a returned uid are killed before it is set aside as unusable. */
const KILL_ROUNDS = 20;
/** Folders every user may write into, cleared of a returned uid's files. */
const SHARED_TMP_DIRS = ["/tmp", "/var/tmp", "/dev/shm"];

const decoder = new TextDecoder();
const flag = (text: string) => `--run-as-range '${text}'`;

/**
 * Reads `FIRST-LAST` (e.g. `20000-29999`).
 *
 * @throws {ValidationError} Saying what is wrong and what to give instead.
 */
export function parseRunAsRange(text: string): UidRange {
  const m = /^\s*(\d{1,10})\s*-\s*(\d{1,10})\s*$/.exec(text);
  if (!m) {
    throw new ValidationError(`Cannot use ${flag(text)} as it is not FIRST-LAST in whole numbers: e.g. 20000-29999`, {
      code: "invalid_run_as_range",
    });
  }
  const first = Number(m[1]);
  const last = Number(m[2]);
  const bad = (why: string): never => {
    throw new ValidationError(`Cannot use ${flag(text)} as ${why}`, { code: "invalid_run_as_range" });
  };
  if (first > last) bad(`its first uid is above its last: write the lower one first, e.g. ${last}-${first}`);
  if (first < LOWEST_UID) {
    bad(`it starts below ${LOWEST_UID}, where system users live: choose uids no account uses, e.g. 20000-29999`);
  }
  if (last > HIGHEST_UID) bad(`it ends above ${HIGHEST_UID}, the highest uid it may use`);
  return { first, last };
}

/** Ranges up to this many ids are looked up id by id; larger ones through the enumerated list only. */
const LOOKUP_IDS = 100_000;

/**
 * Accounts (`getent passwd` or `group`) whose id is in the range. Each id is
 * looked up (one getent for all): directory services such as sssd or LDAP
 * often do not list their accounts, but answer for an id.
 */
function accountsIn(range: UidRange, db: "passwd" | "group"): Array<{ name: string; id: number }> {
  const ids = range.last - range.first + 1 <= LOOKUP_IDS
    ? Array.from({ length: range.last - range.first + 1 }, (_, i) => String(range.first + i))
    : [];
  let out: Deno.CommandOutput;
  try {
    out = new Deno.Command("getent", { args: [db, ...ids], stdout: "piped", stderr: "null" }).outputSync();
  } catch {
    return []; // No getent (not glibc): /etc files only.
  }
  return decoder.decode(out.stdout).split("\n").map((line) => line.split(":"))
    .filter((f) => f.length >= 3 && Number(f[2]) >= range.first && Number(f[2]) <= range.last)
    .map((f) => ({ name: f[0], id: Number(f[2]) }));
}

/** What {@linkcode resolveRunAsRange} checked: the range and setpriv's path. */
export interface ResolvedRange extends UidRange {
  setpriv: string;
}

/**
 * Checks `--run-as-range` before the node starts: a valid range, the node
 * running as root, setpriv installed, no `--run-as` beside it, and no
 * account or group already using an id of the range (its instances would get
 * that account's files).
 *
 * @throws {ValidationError} Naming the flag, what is wrong and how to fix it.
 */
export function resolveRunAsRange(text: string, options: { runAs?: string; uid?: number } = {}): ResolvedRange {
  if (options.runAs !== undefined) {
    throw new ValidationError(
      `Cannot use --run-as '${options.runAs}' with ${
        flag(text)
      }: choose one (the range gives each task a uid of its own)`,
      { code: "invalid_run_as_range" },
    );
  }
  const range = parseRunAsRange(text);
  requireRoot(`use ${flag(text)}`, options.uid);
  const setpriv = findSetpriv(`use ${flag(text)}`);
  for (const db of ["passwd", "group"] as const) {
    const taken = accountsIn(range, db);
    if (taken.length > 0) {
      const names = taken.slice(0, 3).map((a) => `'${a.name}' (${a.id})`).join(", ");
      throw new ValidationError(
        `Cannot use ${flag(text)} as ${db === "passwd" ? "user" : "group"} ${names}${
          taken.length > 3 ? ` and ${taken.length - 3} more` : ""
        } already use ids in it (getent ${db}): instances would get their files; choose a range no account or group uses`,
        { code: "run_as_range_taken" },
      );
    }
  }
  return { ...range, setpriv };
}

/** The range's first uid as a user, for checking at start what instances will reach. */
export function probeUser(range: ResolvedRange): RunAs {
  const uid = range.first;
  return { user: `uid ${uid}`, setpriv: range.setpriv, uid, gid: uid, home: "/", shell: "/bin/sh", clearGroups: true };
}

/** A uid of the range, lent to one task. */
export interface TaskUser extends RunAs {
  /** Resolves once its folder, HOME and TMPDIR exist. */
  ready: Promise<void>;
}

/** Lends the range's uids to tasks. */
export interface TaskUsers {
  /**
   * The uid of `taskId` (one more hold on it), taking a free one for a task
   * that has none; null when every uid is lent (try again after `onFree`).
   */
  hold(taskId: string): TaskUser | null;
  /** Gives back one hold; the last one returns the uid (its processes killed, its folder removed). */
  unhold(taskId: string): void;
  /** Kills whatever runs as a uid of the range, and removes their files in shared folders (an earlier run's). */
  sweep(): Promise<void>;
  /** Tasks holding a uid now. */
  readonly lent: number;
  /** Resolves once no uid is being returned. */
  settled(): Promise<void>;
}

/** Options of {@linkcode createTaskUsers}. */
export interface TaskUsersOptions {
  range: ResolvedRange;
  /** The node's runs folder: each uid's folder is made in it. */
  runsDir: string;
  /** Called before a returned uid's folder is removed (to forget kept run dirs in it). */
  onReturn(user: TaskUser): void;
  /** Called when a uid is free again. */
  onFree(): void;
  log: Logger;
  /** Folders cleared of a returned uid's files. @default {["/tmp", "/var/tmp", "/dev/shm"]} */
  sharedDirs?: readonly string[];
}

/** The pids of processes running as `uid` (real, effective, saved or file-system uid); zombies left out. */
export function processesOf(uid: number): number[] {
  const pids: number[] = [];
  for (const e of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(e.name)) continue;
    let status: string;
    try {
      status = Deno.readTextFileSync(`/proc/${e.name}/status`);
    } catch {
      continue; // Ended meanwhile.
    }
    const uids = /^Uid:\s+(.*)$/m.exec(status)?.[1].split(/\s+/).map(Number) ?? [];
    if (/^State:\s+Z/m.test(status)) continue;
    if (uids.includes(uid)) pids.push(Number(e.name));
  }
  return pids;
}

/**
 * Removes what the uids `owned` picks left directly in `dirs` (with
 * everything below it). Only once no process runs as them: then nothing of
 * theirs can change, and the sticky bit keeps other users from renaming
 * their entries; removal does not follow symlinks.
 */
export async function removeOwned(owned: (uid: number) => boolean, dirs: readonly string[]): Promise<number> {
  let removed = 0;
  for (const dir of dirs) {
    let names: string[];
    try {
      names = [...Deno.readDirSync(dir)].map((e) => e.name);
    } catch {
      continue; // Not there.
    }
    for (const name of names) {
      const path = join(dir, name);
      try {
        if (!owned((await Deno.lstat(path)).uid ?? 0)) continue;
        await removeTree(path);
        removed++;
      } catch { /* gone meanwhile */ }
    }
  }
  return removed;
}

/** Creates the lender of the range's uids. */
export function createTaskUsers(options: TaskUsersOptions): TaskUsers {
  const { range, log } = options;
  const byTask = new Map<string, { user: TaskUser; holds: number }>();
  /** Uids given back, least recently returned first; uids above `fresh` were never lent. */
  const returned: number[] = [];
  let fresh = range.first;
  const returning = new Set<Promise<void>>();
  const sharedDirs = options.sharedDirs ?? SHARED_TMP_DIRS;

  const userOf = (uid: number): TaskUser => {
    const dir = join(options.runsDir, `u${uid}`);
    const user: TaskUser = {
      user: `parallelic-${uid}`,
      setpriv: range.setpriv,
      uid,
      gid: uid,
      home: join(dir, "home"),
      shell: "/bin/sh",
      clearGroups: true,
      dir,
      tmpDir: join(dir, "tmp"),
      ready: Promise.resolve(),
    };
    user.ready = (async () => {
      await removeTree(dir); // Left by a run of the node that ended without cleaning up.
      await Deno.mkdir(dir, { mode: 0o700 });
      await Deno.chown(dir, 0, uid);
      await Deno.chmod(dir, 0o710);
      for (const sub of [user.home, user.tmpDir!]) {
        await Deno.mkdir(sub);
        await giveDir(user, sub);
      }
    })();
    user.ready.catch(() => {}); // Reported through the instances that wait for it.
    return user;
  };

  /** Kills every process of `uid`: `kill -KILL -1` run as that uid reaches all of them, and nothing else. */
  const killAll = async (uid: number): Promise<boolean> => {
    for (let round = 0; round < KILL_ROUNDS; round++) {
      if (processesOf(uid).length === 0) return true;
      await new Deno.Command(range.setpriv, {
        args: [`--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", "/bin/sh", "-c", "kill -KILL -1"],
        clearEnv: true,
        stdout: "null",
        stderr: "null",
      }).output().catch(() => {});
      await new Promise((r) => setTimeout(r, round * 10));
    }
    return processesOf(uid).length === 0;
  };

  const giveBack = async (user: TaskUser) => {
    await user.ready.catch(() => {});
    const gone = await killAll(user.uid);
    options.onReturn(user);
    await removeTree(user.dir!);
    if (!gone) {
      // Never lent again while this node runs: whatever still runs as it would reach the next task.
      log.warn("node:uid-retired", { uid: user.uid, reason: "processes running as it survived SIGKILL" });
      return;
    }
    const removed = await removeOwned((uid) => uid === user.uid, sharedDirs);
    if (removed > 0) log.debug("node:uid-files-removed", { uid: user.uid, removed });
    returned.push(user.uid);
    options.onFree();
  };

  return {
    hold(taskId) {
      const held = byTask.get(taskId);
      if (held) {
        held.holds++;
        return held.user;
      }
      const uid = fresh <= range.last ? fresh++ : returned.shift();
      if (uid === undefined) return null;
      const user = userOf(uid);
      byTask.set(taskId, { user, holds: 1 });
      log.debug("node:uid-lent", { taskId, uid });
      return user;
    },

    unhold(taskId) {
      const held = byTask.get(taskId);
      if (!held || --held.holds > 0) return;
      byTask.delete(taskId);
      log.debug("node:uid-returned", { taskId, uid: held.user.uid });
      const p = giveBack(held.user).catch((e) => log.warn("node:uid-return-failed", { error: String(e) }));
      returning.add(p);
      void p.finally(() => returning.delete(p));
    },

    async sweep() {
      // One pass over /proc finds the range's uids in use; each is then killed as itself.
      const uids = new Set<number>();
      for (const e of Deno.readDirSync("/proc")) {
        if (!/^\d+$/.test(e.name)) continue;
        try {
          const status = Deno.readTextFileSync(`/proc/${e.name}/status`);
          const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1]);
          if (uid >= range.first && uid <= range.last) uids.add(uid);
        } catch { /* ended meanwhile */ }
      }
      for (const uid of uids) {
        log.warn("node:uid-leftovers", { uid, processes: processesOf(uid).length });
        await killAll(uid);
      }
      await removeOwned((uid) => uid >= range.first && uid <= range.last, sharedDirs);
    },

    get lent() {
      return byTask.size;
    },

    async settled() {
      while (returning.size > 0) await Promise.all(returning);
    },
  };
}
