/**
 * A cgroup v2 sub-tree for the node's instances, where the node may make
 * one (it runs as root, or was delegated a sub-tree): each instance gets a
 * cgroup of its own, which counts the CPU time of its whole tree, holds it
 * to its `memory` with `memory.max` when the memory controller is offered,
 * and kills everything in it at the end (`cgroup.kill`), even what left
 * the instance's process group.
 *
 * Processes join their cgroup just after they start (`posix_spawn` cannot
 * start them inside one): what a process forks in that moment is found
 * through /proc and moved too.
 *
 * @module
 */
import { join } from "node:path";

/** Usage read from an instance's cgroup. */
export interface CgroupUsage {
  /** `cpu.stat` usage_usec, in ms. */
  cpuMs: number;
  /** `memory.peak` (or the current use, where there is no peak file); null without the memory controller. */
  memoryBytes: number | null;
  /** True when the kernel killed something in it for going over `memory.max`. */
  oomKilled: boolean;
}

/** One instance's cgroup. */
export interface InstanceCgroup {
  readonly path: string;
  /** Moves process `pid` into it; false when it is gone. */
  add(pid: number): boolean;
  /** The pids in it. */
  pids(): number[];
  usage(): CgroupUsage;
  /**
   * Kills everything in it and removes it (retried while processes die), or
   * keeps it, empty, for another instance.
   */
  remove(): Promise<void>;
}

/** The node's cgroup sub-tree. */
export interface Cgroups {
  /** The sub-tree's path. */
  readonly base: string;
  /** True when instances' memory is held by `memory.max`. */
  readonly memory: boolean;
  /** Makes an instance's cgroup; `memoryBytes` > 0 sets `memory.max`. Null when it cannot be made. */
  create(name: string, memoryBytes: number): InstanceCgroup | null;
  /** Removes the sub-tree (once its instances' cgroups are gone). */
  close(): Promise<void>;
}

const read = (path: string): string | null => {
  try {
    return Deno.readTextFileSync(path);
  } catch {
    return null;
  }
};

const write = (path: string, text: string): boolean => {
  try {
    Deno.writeTextFileSync(path, text);
    return true;
  } catch {
    return false;
  }
};

/** Where cgroup v2 is mounted (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on hybrid systems); null when not. */
export function cgroup2Mount(mountinfo = read("/proc/self/mountinfo") ?? ""): string | null {
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    if (right?.split(" ")[0] === "cgroup2") return left.split(" ")[4] ?? null;
  }
  return null;
}

/** A field of a flat-keyed cgroup file (`cpu.stat`, `memory.events`). */
const field = (text: string | null, key: string): number => {
  const m = text && new RegExp(`^${key} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
};

/** Most empty cgroups kept for reuse. */
const MAX_IDLE = 64;

/** Removes a cgroup once its processes are gone, killing them first. */
async function removeCgroup(path: string): Promise<void> {
  // Usually empty (the spawner killed the instance's process group): cgroup.kill costs far more than this read.
  const pids = (read(join(path, "cgroup.procs")) ?? "").split("\n").filter(Boolean);
  if (pids.length > 0 && !write(join(path, "cgroup.kill"), "1")) {
    for (const pid of pids) {
      try {
        Deno.kill(Number(pid), "SIGKILL");
      } catch { /* gone */ }
    }
  }
  for (let delayMs = 5; delayMs < 5000; delayMs *= 2) {
    try {
      Deno.removeSync(path);
      return;
    } catch (e) {
      if (e instanceof Deno.errors.NotFound) return;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

/** Whether process `pid` is alive. */
const alive = (pid: number) => {
  try {
    Deno.statSync(`/proc/${pid}`);
    return true;
  } catch {
    return false;
  }
};

/**
 * Makes the node's sub-tree `parallelic/<node>.<random>.<pid>` beside the node's own
 * cgroup, and removes what nodes no longer running left there; null where
 * there is no cgroup v2 or it is not writable.
 */
export async function openCgroups(node: string): Promise<Cgroups | null> {
  if (Deno.build.os !== "linux") return null;
  const mount = cgroup2Mount();
  if (!mount) return null;
  const own = /^0::(.*)$/m.exec(read("/proc/self/cgroup") ?? "")?.[1];
  if (own === undefined) return null;
  // Beside the node's own cgroup: a cgroup holding processes cannot hand controllers to children ("no internal
  // processes"), except the root. A delegated sub-tree (systemd Delegate=yes) is the node's own cgroup's parent.
  const parent = own === "/" ? mount : join(mount, own, "..");
  const top = join(parent, "parallelic");
  // The pid in the name tells a crashed node's sub-tree (removed here) from a running one's; the random part, two
  // nodes of one name in one process (a restart in place) apart.
  const base = join(top, `${node}.${crypto.randomUUID().slice(0, 8)}.${Deno.pid}`);
  try {
    Deno.mkdirSync(base, { recursive: true });
  } catch {
    return null;
  }
  if (read(join(base, "cgroup.procs")) === null) return null;
  for (const entry of Deno.readDirSync(top)) {
    const pid = Number(/\.(\d+)$/.exec(entry.name)?.[1]);
    if (!entry.isDirectory || !pid || pid === Deno.pid || alive(pid)) continue;
    const stale = join(top, entry.name);
    for (const child of Deno.readDirSync(stale)) if (child.isDirectory) await removeCgroup(join(stale, child.name));
    await removeCgroup(stale);
  }
  let memory = false;
  if ((read(join(parent, "cgroup.controllers")) ?? "").split(/\s+/).includes("memory")) {
    write(join(parent, "cgroup.subtree_control"), "+memory");
    write(join(top, "cgroup.subtree_control"), "+memory");
    memory = write(join(base, "cgroup.subtree_control"), "+memory");
  }
  // Cgroups of ended instances, empty, kept for the next ones: making and removing one costs more than the rest of
  // an instance's accounting. Not where memory is held: memory.peak and memory.events count from a cgroup's making.
  const idle: string[] = [];
  const cpuUsec = (path: string) => field(read(join(path, "cpu.stat")), "usage_usec");
  return {
    base,
    memory,
    create(name, memoryBytes) {
      let path = idle.pop();
      const reused = path !== undefined;
      if (!path) {
        path = join(base, name);
        try {
          Deno.mkdirSync(path);
        } catch (e) {
          if (!(e instanceof Deno.errors.AlreadyExists)) return null;
        }
      }
      const dir = path;
      const cpuBefore = reused ? cpuUsec(dir) : 0;
      if (memory && memoryBytes > 0) {
        write(join(dir, "memory.max"), String(memoryBytes));
        // Held to its memory, not pushed into swap; and an out-of-memory kill takes the whole instance.
        write(join(dir, "memory.swap.max"), "0");
        write(join(dir, "memory.oom.group"), "1");
      }
      const pids = () => (read(join(dir, "cgroup.procs")) ?? "").split("\n").filter(Boolean).map(Number);
      return {
        path: dir,
        add: (pid) => write(join(dir, "cgroup.procs"), String(pid)),
        pids,
        usage() {
          const cpuMs = Math.round((cpuUsec(dir) - cpuBefore) / 1000);
          // Missing files cost an exception each: without the memory controller there are none to read.
          if (!memory) return { cpuMs, memoryBytes: null, oomKilled: false };
          const peak = read(join(dir, "memory.peak")) ?? read(join(dir, "memory.current"));
          return {
            cpuMs,
            memoryBytes: peak !== null ? Number(peak.trim()) : null,
            oomKilled: field(read(join(dir, "memory.events")), "oom_kill") > 0,
          };
        },
        remove() {
          if (!memory && idle.length < MAX_IDLE && pids().length === 0) {
            idle.push(dir);
            return Promise.resolve();
          }
          return removeCgroup(dir);
        },
      };
    },
    async close() {
      for (const path of idle.splice(0)) await removeCgroup(path);
      await removeCgroup(base);
    },
  };
}
