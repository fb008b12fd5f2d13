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
  /** True when the hierarchy is mounted with `favordynmods`: a move into a cgroup does not wait (see cgroup2MountInfo). */
  readonly favorDynmods: boolean;
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

/**
 * A cgroup file kept open: the kernel makes its text anew at every read from
 * its start, so one open serves every read (and every write) of the
 * instances that reuse the cgroup, where an open, a read and a close each
 * time cost three system calls and a path walk.
 */
interface HeldFile {
  /** Its whole text, or null when it cannot be read. */
  read(): string | null;
  /** Writes `text` in one call; false when the kernel refused it (a pid that is gone). */
  write(text: string): boolean;
  close(): void;
}

const decoder = new TextDecoder();
const encoder = new TextEncoder();

function holdFile(path: string, mode: "read" | "write"): HeldFile {
  let file: Deno.FsFile | null = null;
  try {
    file = Deno.openSync(path, mode === "read" ? { read: true } : { write: true });
  } catch { /* Answered by the fallbacks below. */ }
  // One buffer for every read: these files are read once or twice per instance.
  const buf = mode === "read" ? new Uint8Array(4096) : new Uint8Array(0);
  return {
    read() {
      if (!file) return read(path);
      try {
        file.seekSync(0, Deno.SeekMode.Start);
        let text = "";
        for (let n = file.readSync(buf); n; n = file.readSync(buf)) {
          text += decoder.decode(buf.subarray(0, n), { stream: true });
        }
        return text + decoder.decode();
      } catch {
        return null;
      }
    },
    write(text) {
      if (!file) return write(path, text);
      try {
        file.writeSync(encoder.encode(text));
        return true;
      } catch {
        return false;
      }
    },
    close() {
      file?.close();
      file = null;
    },
  };
}

/**
 * The cgroup v2 mount (`/sys/fs/cgroup`, or `/sys/fs/cgroup/unified` on
 * hybrid systems): its path, and whether it has `favordynmods` (Linux
 * 6.0+). Without it, moving a process into a cgroup waits for an RCU grace
 * period whenever no other move came just before: on an idle node, each
 * instance's first milliseconds (see docs/operations.md).
 */
export function cgroup2MountInfo(mountinfo = read("/proc/self/mountinfo") ?? ""): {
  path: string;
  favorDynmods: boolean;
} | null {
  for (const line of mountinfo.split("\n")) {
    const [left, right] = line.split(" - ");
    const [type, , superOptions = ""] = right?.split(" ") ?? [];
    if (type !== "cgroup2") continue;
    const path = left.split(" ")[4];
    return path ? { path, favorDynmods: superOptions.split(",").includes("favordynmods") } : null;
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
  const mounted = cgroup2MountInfo();
  if (!mounted) return null;
  const mount = mounted.path;
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
  // Their files that every instance reads or writes stay open (see HeldFile).
  interface Kept {
    dir: string;
    procs: HeldFile;
    procsIn: HeldFile;
    stat: HeldFile;
  }
  const idle: Kept[] = [];
  const closeFiles = (kept: Kept) => [kept.procs, kept.procsIn, kept.stat].forEach((f) => f.close());
  const cpuUsec = (stat: HeldFile) => field(stat.read(), "usage_usec");
  return {
    base,
    memory,
    favorDynmods: mounted.favorDynmods,
    create(name, memoryBytes) {
      let kept = idle.pop();
      const reused = kept !== undefined;
      if (!kept) {
        const dir = join(base, name);
        try {
          Deno.mkdirSync(dir);
        } catch (e) {
          if (!(e instanceof Deno.errors.AlreadyExists)) return null;
        }
        const procsPath = join(dir, "cgroup.procs");
        kept = {
          dir,
          procs: holdFile(procsPath, "read"),
          procsIn: holdFile(procsPath, "write"),
          stat: holdFile(join(dir, "cpu.stat"), "read"),
        };
      }
      const { dir, procs, procsIn, stat } = kept;
      const cpuBefore = reused ? cpuUsec(stat) : 0;
      if (memory && memoryBytes > 0) {
        write(join(dir, "memory.max"), String(memoryBytes));
        // Held to its memory, not pushed into swap; and an out-of-memory kill takes the whole instance.
        write(join(dir, "memory.swap.max"), "0");
        write(join(dir, "memory.oom.group"), "1");
      }
      const pids = () => (procs.read() ?? "").split("\n").filter(Boolean).map(Number);
      const done = kept;
      return {
        path: dir,
        add: (pid) => procsIn.write(String(pid)),
        pids,
        usage() {
          const cpuMs = Math.round((cpuUsec(stat) - cpuBefore) / 1000);
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
            idle.push(done);
            return Promise.resolve();
          }
          closeFiles(done);
          return removeCgroup(dir);
        },
      };
    },
    async close() {
      for (const kept of idle.splice(0)) {
        closeFiles(kept);
        await removeCgroup(kept.dir);
      }
      await removeCgroup(base);
    },
  };
}
