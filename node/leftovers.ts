/**
 * What a node's previous run left behind. Each instance's process group is
 * written down while it runs (a line `+<pid>-<start time>` appended to
 * `<work dir>/pids/journal`, the start time so that a pid the kernel gave to
 * another process since is never taken for it: read from /proc, or the
 * clock ticks since boot just before and just after the spawn,
 * `+<pid>-<from>-<to>`, which cost no read), and crossed out when it ends (a
 * line `-` and the same). One open file takes both:
 * a file made and removed per instance cost the node more than the rest of
 * its file system work together. It is emptied when nothing runs once it
 * holds a few KiB (not after every instance: a node between two instances
 * would truncate it each time), and rewritten with what runs once it grows
 * past {@linkcode JOURNAL_MAX_BYTES}.
 * (Nodes before the journal wrote a file `<pid>-<start time>` per group in
 * the same folder: those are read too.) A node that
 * was killed (SIGKILL, a crash, the OOM killer) never crossed out what ran:
 * on its next start, before it takes work, it kills those groups, and every
 * process whose environment places it in one of its run dirs (which also
 * finds what left its group with setsid).
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../core/log.ts";

/** The running instances' process groups, kept in the work dir. */
export interface ProcessLedger {
  /**
   * Writes down the group of a process just started (its pid is the group's
   * id), with the clock ticks since boot between which it started when the
   * caller knows them (else its start time is read from /proc).
   */
  started(pid: number, startedWithin?: readonly [number, number]): void;
  /** Crosses it out once it ended and was reaped. */
  ended(pid: number): void;
}

/** The start time of process `pid` (clock ticks since boot), or null when it is gone or a zombie. */
export function startTicks(pid: number): string | null {
  try {
    const stat = Deno.readTextFileSync(`/proc/${pid}/stat`);
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return fields[0] === "Z" ? null : fields[19];
  } catch {
    return null;
  }
}

/** The journal's file name in the ledger's folder. */
const JOURNAL = "journal";
/** Past this size the journal is rewritten with only what runs. */
export const JOURNAL_MAX_BYTES = 64 * 1024;
/** Past this size the journal is emptied when nothing runs. */
export const JOURNAL_IDLE_BYTES = 4 * 1024;

/** A ledger in `dir` (made when missing), starting empty: {@linkcode killLeftovers} has read the last one. */
export function createProcessLedger(dir: string): ProcessLedger {
  // The node's own: instances (another user's, under --run-as) need not list it.
  Deno.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const path = join(dir, JOURNAL);
  const open = () => Deno.openSync(path, { write: true, create: true, truncate: true, mode: 0o600 });
  let file = open();
  let bytes = 0;
  const names = new Map<number, string>();
  const encoder = new TextEncoder();
  const append = (line: string) => {
    const data = encoder.encode(line);
    // A write of a few bytes to a local file is whole, or fails.
    bytes += file.writeSync(data);
  };
  return {
    started(pid, startedWithin) {
      const ticks = startedWithin ? startedWithin.join("-") : startTicks(pid);
      if (ticks === null) return;
      const name = `${pid}-${ticks}`;
      names.set(pid, name);
      append(`+${name}\n`);
    },
    ended(pid) {
      const name = names.get(pid);
      if (!name) return;
      names.delete(pid);
      if (names.size === 0 && bytes > JOURNAL_IDLE_BYTES) {
        // Nothing runs: nothing to remember.
        file.truncateSync(0);
        file.seekSync(0, Deno.SeekMode.Start);
        bytes = 0;
      } else if (bytes > JOURNAL_MAX_BYTES) {
        // Rewritten aside, then renamed over it: a crash meanwhile leaves one or the other whole.
        const lines = [...names.values()].map((n) => `+${n}\n`).join("");
        Deno.writeTextFileSync(`${path}.new`, lines, { mode: 0o600 });
        Deno.renameSync(`${path}.new`, path);
        file.close();
        file = Deno.openSync(path, { write: true, append: true });
        bytes = lines.length;
      } else append(`-${name}\n`);
    },
  };
}

/** The groups a ledger folder holds: its journal's open entries, and files of the older one-file-per-group form. */
function ledgerEntries(dir: string, entries: Deno.DirEntry[]): string[] {
  const open = new Set<string>();
  for (const entry of entries) {
    if (entry.name === JOURNAL) {
      let text = "";
      try {
        text = Deno.readTextFileSync(join(dir, JOURNAL));
      } catch { /* gone */ }
      for (const line of text.split("\n")) {
        if (line.startsWith("+")) open.add(line.slice(1));
        else if (line.startsWith("-")) open.delete(line.slice(1));
      }
    } else if (/^\d+-\d+$/.test(entry.name)) open.add(entry.name);
  }
  return [...open];
}

function kill(pid: number, group: boolean): void {
  try {
    Deno.kill(group ? -pid : pid, "SIGKILL");
  } catch { /* gone */ }
}

/** Pids of processes whose environment sets PARALLELIC_TASK_ROOT inside `runsDir`. */
function inRunDirs(runsDir: string): number[] {
  const marker = new TextEncoder().encode(`\0PARALLELIC_TASK_ROOT=${runsDir}/`);
  const found: number[] = [];
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name) || Number(entry.name) === Deno.pid) continue;
    try {
      const env = Deno.readFileSync(`/proc/${entry.name}/environ`);
      // Prefixed with NUL so that the first variable matches too.
      const all = new Uint8Array(env.length + 1);
      all.set(env, 1);
      if (indexOf(all, marker) >= 0) found.push(Number(entry.name));
    } catch { /* gone, or not ours to read */ }
  }
  return found;
}

function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

/**
 * Kills what a previous run of the node left: the groups in the ledger at
 * `ledgerDir` whose leader is the process written down, and every process
 * placed in `runsDir`; waits (up to 5 s) until they are gone, and empties the
 * ledger. Returns how many processes it killed.
 */
export async function killLeftovers(ledgerDir: string, runsDir: string, log: Logger): Promise<number> {
  const killed = new Set<number>();
  let entries: Deno.DirEntry[] = [];
  try {
    entries = [...Deno.readDirSync(ledgerDir)];
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  for (const name of ledgerEntries(ledgerDir, entries)) {
    // `pid-ticks`, or `pid-from-to`: the process started within those ticks (both ends counted).
    const [pid, from, to = from] = name.split("-").map(Number);
    const ticks = startTicks(pid);
    // Only the process written down: a pid reused since starts at another time (two processes of one pid never
    // live at once, and a pid comes round again only after the others).
    if (ticks !== null && Number(ticks) >= from && Number(ticks) <= to) {
      kill(pid, true);
      kill(pid, false); // Not a group leader when spawned through Deno.Command.
      killed.add(pid);
    }
  }
  for (const entry of entries) await Deno.remove(join(ledgerDir, entry.name)).catch(() => {});
  for (const pid of inRunDirs(runsDir)) {
    kill(pid, false);
    killed.add(pid);
  }
  const deadline = Date.now() + 5000;
  while ([...killed].some((pid) => startTicks(pid) !== null) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 20));
  }
  if (killed.size > 0) log.warn("node:leftovers-killed", { processes: killed.size, runsDir });
  return killed.size;
}
