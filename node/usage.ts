/**
 * What an instance's process tree uses, watched while it runs: CPU time and
 * resident memory summed over the tree (from its cgroup, or /proc), its
 * peak, and — where no cgroup holds its memory — the memory limit enforced
 * by the node: a tree past its `memory` is killed.
 *
 * One timer serves every running instance, and one walk of /proc per tick
 * serves those without a cgroup. An instance is first looked at once it has
 * run {@linkcode FIRST_LOOK_MS}: most instances of a fan-out end sooner, and
 * a walk of /proc reads the stat line of every process on the machine (with
 * a short instance always running, a walk every tick cost the node more than
 * spawning did). What they used comes from their cgroup or `wait4` then.
 *
 * @module
 */
import type { Clock, TimerId } from "../core/clock.ts";
import type { InstanceCgroup } from "./cgroup.ts";

/** Usage of an instance's whole tree. */
export interface TreeUsage {
  /** User + system CPU time, ms. */
  cpuMs: number;
  /** Peak resident memory, bytes. */
  maxRssBytes: number;
}

/** What {@linkcode UsageWatcher.watch} follows. */
export interface WatchRequest {
  pid: number;
  /** The instance's cgroup: its processes are those in it. */
  cgroup: InstanceCgroup | null;
  /** The tree is killed past this many bytes (0: no limit; ignored when the cgroup holds memory). */
  memoryBytes: number;
  /** Called once per process found on the first look (processes forked before it joined its cgroup). */
  adopt(pid: number): void;
  /** Called once when the tree went past `memoryBytes`, with what it held. */
  onOverMemory(bytes: number): void;
}

/** Watches instances' usage. */
export interface UsageWatcher {
  /** Follows an instance until `stop()`, which returns what it saw; `seen()` tells it meanwhile. */
  watch(request: WatchRequest): { seen(): TreeUsage; stop(): TreeUsage };
}

/** One process, as its /proc stat line tells. */
interface ProcStat {
  ppid: number;
  /** utime + stime + cutime + cstime, clock ticks. */
  ticks: number;
  rssPages: number;
}

/** How long an instance runs before it is first looked at, ms. */
export const FIRST_LOOK_MS = 20;

/** USER_HZ: /proc counts CPU time in hundredths of a second on every Linux architecture. */
const TICK_MS = 10;

let pageBytes: number | undefined;
/** The page size (/proc counts resident memory in pages). */
function pageSize(): number {
  if (pageBytes !== undefined) return pageBytes;
  pageBytes = 4096;
  try {
    const lib = Deno.dlopen("libc.so.6", { getpagesize: { parameters: [], result: "i32" } } as const);
    pageBytes = lib.symbols.getpagesize();
    lib.close();
  } catch { /* no FFI: 4 KiB, as on x86_64 */ }
  return pageBytes;
}

/** Reads one process's stat line; null when it is gone. */
function statOf(pid: number | string): ProcStat | null {
  let text: string;
  try {
    text = Deno.readTextFileSync(`/proc/${pid}/stat`);
  } catch {
    return null;
  }
  // The command name may hold spaces and parentheses: fields start after the last ')'.
  const f = text.slice(text.lastIndexOf(")") + 2).split(" ");
  return {
    ppid: Number(f[1]),
    ticks: Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]),
    rssPages: Number(f[21]),
  };
}

/** Every process, with its parent (one walk of /proc). */
function scanProc(): Map<number, ProcStat> {
  const all = new Map<number, ProcStat>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      const stat = statOf(entry.name);
      if (stat) all.set(Number(entry.name), stat);
    }
  } catch { /* no /proc */ }
  return all;
}

/** `pid` and its descendants in `all`. */
function treeIn(all: Map<number, ProcStat>, pid: number): number[] {
  const children = new Map<number, number[]>();
  for (const [p, s] of all) {
    const list = children.get(s.ppid);
    if (list) list.push(p);
    else children.set(s.ppid, [p]);
  }
  const tree = all.has(pid) ? [pid] : [];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/** Creates the node's watcher, looking every `intervalMs`. */
export function createUsageWatcher(options: { clock: Clock; intervalMs?: number }): UsageWatcher {
  const { clock } = options;
  const intervalMs = options.intervalMs ?? 200;
  const page = pageSize();
  interface Watch {
    request: WatchRequest;
    /** When it started (the clock's ms). */
    sinceMs: number;
    seen: TreeUsage;
    first: boolean;
    over: boolean;
  }
  const watches = new Set<Watch>();
  let timer: TimerId | undefined;

  const look = (w: Watch, all: Map<number, ProcStat> | null) => {
    const { request } = w;
    let pids: number[];
    let stats: (ProcStat | null)[];
    if (all) {
      pids = treeIn(all, request.pid);
      stats = pids.map((p) => all.get(p)!);
    } else {
      pids = request.cgroup!.pids();
      stats = pids.map(statOf);
    }
    if (w.first) {
      w.first = false;
      for (const p of pids) if (p !== request.pid) request.adopt(p);
    }
    let ticks = 0;
    let rssBytes = 0;
    for (const s of stats) {
      if (!s) continue;
      ticks += s.ticks;
      rssBytes += s.rssPages * page;
    }
    w.seen.cpuMs = Math.max(w.seen.cpuMs, ticks * TICK_MS);
    w.seen.maxRssBytes = Math.max(w.seen.maxRssBytes, rssBytes);
    if (request.memoryBytes > 0 && rssBytes > request.memoryBytes && !w.over) {
      w.over = true;
      request.onOverMemory(rssBytes);
    }
  };

  const tick = () => {
    timer = undefined;
    if (watches.size === 0) return;
    // One walk of /proc serves every instance that has no cgroup, and each instance's first look.
    let all: Map<number, ProcStat> | null = null;
    const now = clock.now();
    for (const w of watches) {
      if (now - w.sinceMs < FIRST_LOOK_MS) continue;
      if (!w.request.cgroup || w.first) all ??= scanProc();
      look(w, w.request.cgroup && !w.first ? null : all);
    }
    timer = clock.setTimeout(tick, intervalMs);
  };

  return {
    watch(request) {
      const w: Watch = { request, sinceMs: clock.now(), seen: { cpuMs: 0, maxRssBytes: 0 }, first: true, over: false };
      watches.add(w);
      timer ??= clock.setTimeout(tick, Math.min(intervalMs, FIRST_LOOK_MS));
      return {
        seen: () => ({ ...w.seen }),
        stop() {
          watches.delete(w);
          return w.seen;
        },
      };
    },
  };
}

/** Formats bytes in MiB the way memory limits are worded ("64 MiB"). */
export function mib(bytes: number): string {
  const m = bytes / 2 ** 20;
  return `${m >= 10 || Number.isInteger(m) ? Math.round(m) : m.toFixed(1)} MiB`;
}
