/**
 * CPU pinning: the CPUs a node may use, handed out to instances so that
 * concurrent ones do not share while there are enough, and set on every
 * thread of an instance's process tree with `sched_setaffinity` (through
 * Deno's FFI, Linux only). Thread pools (OpenMP, MKL, OpenBLAS) are told
 * the same count through their environment variables.
 *
 * Pinning is for fairness between instances, not isolation: a process may
 * call `sched_setaffinity` itself.
 *
 * @module
 */
import { loadLibc } from "./libc.ts";

/** The environment variables that size common thread pools. */
export const THREAD_ENV = ["OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"] as const;

/** Sets each of {@linkcode THREAD_ENV} to `cpus` unless the task's own `[env]` gave it. */
export function threadEnv(env: Record<string, string>, taskEnv: Record<string, string>, cpus: number): void {
  for (const k of THREAD_ENV) if (taskEnv[k] === undefined) env[k] = String(cpus);
}

/** Sets and reads CPU affinity; null where the C library cannot be loaded. */
export interface Affinity {
  /** The CPUs the node itself may run on. */
  allowed(): number[];
  /** Pins thread or process `tid` to `cpus`; false when it is gone (or not ours). */
  set(tid: number, cpus: readonly number[]): boolean;
}

const MASK_BYTES = 128; // 1024 CPUs, glibc's cpu_set_t

let loaded: Affinity | null | undefined;

/** Loads `sched_getaffinity`/`sched_setaffinity` once; null where they cannot be loaded. */
export function loadAffinity(): Affinity | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (Deno.build.os !== "linux") return null;
  let lib;
  try {
    lib = Deno.dlopen(
      "libc.so.6",
      {
        sched_getaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
        sched_setaffinity: { parameters: ["i32", "usize", "buffer"], result: "i32" },
      } as const,
    );
  } catch {
    return null; // Another C library, or FFI not allowed.
  }
  const c = lib.symbols;
  const mask = new Uint8Array(MASK_BYTES);
  loaded = {
    allowed() {
      mask.fill(0);
      if (c.sched_getaffinity(0, BigInt(MASK_BYTES), mask) !== 0) {
        return Array.from({ length: navigator.hardwareConcurrency }, (_, i) => i);
      }
      const cpus: number[] = [];
      for (let i = 0; i < MASK_BYTES * 8; i++) if (mask[i >> 3] & (1 << (i & 7))) cpus.push(i);
      return cpus;
    },
    set(tid, cpus) {
      mask.fill(0);
      for (const cpu of cpus) mask[cpu >> 3] |= 1 << (cpu & 7);
      return c.sched_setaffinity(tid, BigInt(MASK_BYTES), mask) === 0;
    },
  };
  return loaded;
}

/** Hands out CPUs to instances. */
export interface CpuPool {
  /** The CPUs it hands out. */
  readonly cpus: readonly number[];
  /**
   * Takes `n` CPUs (at most all of them): free ones first, then those
   * shared by the fewest instances, so that more instances than CPUs (a
   * node with more slots than CPUs) still spread evenly.
   */
  take(n: number): number[];
  /** Gives back what {@linkcode CpuPool.take} handed out. */
  release(cpus: readonly number[]): void;
}

/** Creates a pool over `cpus`. */
export function createCpuPool(cpus: readonly number[]): CpuPool {
  const users = new Map(cpus.map((c) => [c, 0]));
  return {
    cpus,
    take(n) {
      // Stable sort: among equally used CPUs the lowest numbers come first.
      const picked = [...cpus].sort((a, b) => users.get(a)! - users.get(b)!).slice(0, Math.max(1, n));
      for (const c of picked) users.set(c, users.get(c)! + 1);
      return picked.sort((a, b) => a - b);
    },
    release(taken) {
      for (const c of taken) users.set(c, Math.max(0, (users.get(c) ?? 1) - 1));
    },
  };
}

/**
 * Pins every thread of process `pid` to `cpus`. Its main thread first: threads
 * it starts afterwards inherit the mask. Then, when /proc counts more threads
 * than that one (a task folder's link count is 2 + its threads), each of them;
 * a process still single-threaded, as most are just after their spawn, costs
 * one `stat` instead of a folder read.
 */
export function pinProcess(
  affinity: Affinity,
  pid: number,
  cpus: readonly number[],
  linkCount: (path: string) => number | null = linkCountOf,
): void {
  affinity.set(pid, cpus);
  const links = linkCount(`/proc/${pid}/task`);
  if (links === null) return; // Gone already.
  if (links === 3) return;
  for (const tid of threadsOf(pid)) if (tid !== pid) affinity.set(tid, cpus);
}

/**
 * The link count of `path`, or null when it is gone: through the C library's
 * statx where it loads (the one number, without the object Deno.statSync
 * builds), else Deno.statSync.
 */
export function linkCountOf(path: string): number | null {
  const libc = loadLibc();
  if (libc) return libc.stamp(path)?.nlink ?? null;
  try {
    return Deno.statSync(path).nlink ?? 0;
  } catch {
    return null;
  }
}

/** The thread ids of process `pid` (just `pid` when /proc cannot tell). */
export function threadsOf(pid: number): number[] {
  try {
    return [...Deno.readDirSync(`/proc/${pid}/task`)].map((e) => Number(e.name));
  } catch {
    return [pid];
  }
}

/** Formats CPUs as a list (`0-3,6`), as `taskset -c` and cpusets write them. */
export function cpuList(cpus: readonly number[]): string {
  const parts: string[] = [];
  for (let i = 0; i < cpus.length; i++) {
    let j = i;
    while (j + 1 < cpus.length && cpus[j + 1] === cpus[j] + 1) j++;
    parts.push(j > i ? `${cpus[i]}-${cpus[j]}` : String(cpus[i]));
    i = j;
  }
  return parts.join(",");
}
