/**
 * One process per folder: the manager locks its data dir and a node its work
 * dir, so that a second one started on the same folder stops before it
 * touches anything (the first one's nats-server, JetStream store or Deno KV
 * file). The lock is the kernel's (flock on `<dir>/.lock`): it ends with its
 * process, however that ends, so a killed holder leaves nothing to clean up.
 * The file also names the holder's pid for the message.
 *
 * @module
 */
import { join } from "node:path";
import { ConflictError } from "./errors.ts";

/** A held folder lock. */
export interface DirLock {
  /** Lets the folder go. */
  release(): void;
}

/**
 * Locks `dir` (made when missing) for this process.
 *
 * @param what How the folder is named in the message (`data dir`).
 * @param flag The flag that picks another folder (`--data-dir`).
 * @throws {ConflictError} When another process (or another holder in this one) has it, naming its pid.
 */
export async function lockDir(dir: string, what: string, flag: string): Promise<DirLock> {
  await Deno.mkdir(dir, { recursive: true });
  const path = join(dir, ".lock");
  const file = await Deno.open(path, { read: true, write: true, create: true, mode: 0o600 });
  try {
    if (!(await file.tryLock(true))) {
      const holder = (await Deno.readTextFile(path).catch(() => "")).trim();
      throw new ConflictError(
        `Cannot start: ${what} ${dir} is in use by another Parallelic process (pid ${
          /^\d+$/.test(holder) ? holder : "unknown"
        }). Stop that one first, or give this one another ${flag}.`,
        { code: "dir_locked" },
      );
    }
    await file.truncate(0);
    await file.write(new TextEncoder().encode(`${Deno.pid}\n`));
  } catch (e) {
    file.close();
    throw e;
  }
  let held = true;
  return {
    release() {
      if (!held) return;
      held = false;
      file.close(); // Closing the last descriptor ends the lock.
    },
  };
}
