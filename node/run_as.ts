/**
 * Running instances as another OS user (`parallelic node --run-as USER`):
 * a node started as root hands each instance its own folder, owned by USER,
 * and starts the entrypoint through `setpriv` (util-linux) with USER's uid,
 * gid and groups. The node's own files (its NATS key, the package cache)
 * stay readable by root only.
 *
 * This keeps instances away from the node's secrets and from each other's
 * folders; it is no sandbox: an instance can do whatever USER can do.
 *
 * @module
 */
import { join } from "node:path";
import { ValidationError } from "../core/errors.ts";

/** The user instances run as. */
export interface RunAs {
  user: string;
  /** Absolute path of setpriv (never looked up in an instance's PATH). */
  setpriv: string;
  uid: number;
  gid: number;
  home: string;
  shell: string;
  /** No supplementary groups (a uid of `--run-as-range`, which has no account); else the user's own. */
  clearGroups?: boolean;
  /** The folder, private to this user, that holds its run dirs (else the node's runs folder). */
  dir?: string;
  /** Its own TMPDIR. */
  tmpDir?: string;
}

const decoder = new TextDecoder();

/**
 * Looks `user` up (`getent passwd`) and checks the node may switch to it.
 *
 * @throws {ValidationError} When the node is not root, or there is no such user, or it is root.
 */
export function resolveRunAs(user: string): RunAs {
  requireRoot(`run instances as '${user}'`);
  const out = new Deno.Command("getent", { args: ["passwd", user], stdout: "piped", stderr: "null" }).outputSync();
  const fields = decoder.decode(out.stdout).trim().split(":");
  if (!out.success || fields.length < 7) {
    throw new ValidationError(`Cannot run instances as '${user}' as there is no such user`, { code: "no_such_user" });
  }
  const uid = Number(fields[2]);
  if (uid === 0) {
    throw new ValidationError(`Cannot run instances as '${user}' as it is root: name an unprivileged user`, {
      code: "run_as_root",
    });
  }
  const setpriv = findSetpriv(`run instances as '${user}'`);
  return { user: fields[0], setpriv, uid, gid: Number(fields[3]), home: fields[5], shell: fields[6] };
}

/**
 * Checks that the node runs as root, which switching users needs.
 *
 * @throws {ValidationError} Saying what could not be done (`what`) and how to fix it.
 */
export function requireRoot(what: string, uid = Deno.uid()): void {
  if (uid !== 0) {
    throw new ValidationError(
      `Cannot ${what} as the node is not running as root (uid ${uid}): start the node as root, ` +
        `it switches each instance to the other user itself`,
      { code: "run_as_needs_root" },
    );
  }
}

/**
 * The absolute path of setpriv (util-linux).
 *
 * @throws {ValidationError} When it is not installed.
 */
export function findSetpriv(what: string): string {
  const setpriv = ["/usr/bin/setpriv", "/bin/setpriv", "/usr/sbin/setpriv", "/sbin/setpriv"].find((p) => {
    try {
      return Deno.statSync(p).isFile;
    } catch {
      return false;
    }
  });
  if (!setpriv) {
    throw new ValidationError(`Cannot ${what} as setpriv is not installed: install util-linux`, {
      code: "run_as_failed",
    });
  }
  return setpriv;
}

/** The command line that starts `command args` as the user. */
export function asUser(runAs: RunAs, command: string, args: string[]): { command: string; args: string[] } {
  return {
    command: runAs.setpriv,
    args: [
      `--reuid=${runAs.uid}`,
      `--regid=${runAs.gid}`,
      runAs.clearGroups ? "--clear-groups" : "--init-groups",
      "--",
      command,
      ...args,
    ],
  };
}

/** The environment an instance of the user starts with (before the task's own variables). */
export function userEnv(runAs: RunAs, base: Record<string, string>): Record<string, string> {
  const env: Record<string, string> = {
    ...base,
    HOME: runAs.home,
    USER: runAs.user,
    LOGNAME: runAs.user,
    SHELL: runAs.shell,
  };
  if (runAs.tmpDir) env.TMPDIR = runAs.tmpDir;
  return env;
}

/**
 * Gives `dir` and everything in it to the user (symlinks are left as they
 * are, never followed), and makes `dir` private to them. Done before the
 * instance starts, never after: the node does not touch what an instance
 * could have changed.
 */
export async function handOver(runAs: RunAs, dir: string): Promise<void> {
  const walk = async (path: string) => {
    for await (const e of Deno.readDir(path)) {
      const p = join(path, e.name);
      if (e.isSymlink) continue;
      await Deno.chown(p, runAs.uid, runAs.gid);
      if (e.isDirectory) await walk(p);
    }
  };
  await walk(dir);
  await Deno.chown(dir, runAs.uid, runAs.gid);
  await Deno.chmod(dir, 0o700);
}

/** Makes an empty folder `dir` the user's own, private to them. */
export async function giveDir(runAs: RunAs, dir: string): Promise<void> {
  await Deno.chown(dir, runAs.uid, runAs.gid);
  await Deno.chmod(dir, 0o700);
}

/**
 * Checks that the user can reach `dir` (every folder above it must let
 * others pass), so that a misplaced work dir fails at start, not per instance.
 *
 * @throws {ValidationError} Naming the folder and what to do.
 */
export async function checkReachable(runAs: RunAs, dir: string): Promise<void> {
  const { command, args } = asUser(runAs, "/bin/sh", ["-c", 'cd "$1"', "sh", dir]);
  let ok = false;
  try {
    ok = (await new Deno.Command(command, { args, stdout: "null", stderr: "null", clearEnv: true }).output()).success;
  } catch (e) {
    throw new ValidationError(`Cannot run instances as '${runAs.user}' as setpriv failed: ${(e as Error).message}`, {
      code: "run_as_failed",
    });
  }
  if (!ok) {
    throw new ValidationError(
      `Cannot run instances as '${runAs.user}' as it cannot reach the work dir '${dir}': ` +
        `choose a --work-dir whose parent folders others may enter (e.g. /var/lib/parallelic)`,
      { code: "work_dir_unreachable" },
    );
  }
}
