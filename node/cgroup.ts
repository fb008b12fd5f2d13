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
  /** Kills everything in it and removes it (retried in the background while processes die). */
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

/** Removes a cgroup once its processes are gone, killing them first. */
async function removeCgroup(path: string): Promise<void> {
  if (!write(join(path, "cgroup.kill"), "1")) {
    for (const pid of (read(join(path, "cgroup.procs")) ?? "").split("\n").filter(Boolean)) {
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
 * Makes the node's sub-tree `parallelic/<node>.<pid>` beside the node's own
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
  // The pid in the name tells a crashed node's sub-tree (removed here) from a running one's.
  const base = join(top, `${node}.${Deno.pid}`);
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
  return {
    base,
    memory,
    create(name, memoryBytes) {
      const path = join(base, name);
      try {
        Deno.mkdirSync(path);
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) return null;
      }
      if (memory && memoryBytes > 0) {
        write(join(path, "memory.max"), String(memoryBytes));
        // Held to its memory, not pushed into swap; and an out-of-memory kill takes the whole instance.
        write(join(path, "memory.swap.max"), "0");
        write(join(path, "memory.oom.group"), "1");
      }
      return {
        path,
        add: (pid) => write(join(path, "cgroup.procs"), String(pid)),
        pids: () => (read(join(path, "cgroup.procs")) ?? "").split("\n").filter(Boolean).map(Number),
        usage() {
          const peak = read(join(path, "memory.peak")) ?? read(join(path, "memory.current"));
          return {
            cpuMs: Math.round(field(read(join(path, "cpu.stat")), "usage_usec") / 1000),
            memoryBytes: memory && peak !== null ? Number(peak.trim()) : null,
            oomKilled: memory && field(read(join(path, "memory.events")), "oom_kill") > 0,
          };
        },
        remove: () => removeCgroup(path),
      };
    },
    close: () => removeCgroup(base),
  };
}
