/**
 * How a node holds each instance to its `[resources]`: CPUs pinned (see
 * `cpus.ts`), GPUs of its own (`gpus.ts`), memory held by a cgroup or
 * watched (`cgroup.ts`, `usage.ts`), and what it used measured. The agent
 * takes a hold before it spawns an instance and ends it when the instance
 * ended.
 *
 * These limits keep instances from crowding each other out; they are not a
 * sandbox (see SECURITY.md).
 *
 * @module
 */
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { GpuDevice, InstanceRef, NodeLimits, RunSpec } from "../core/schema.ts";
import { type Cgroups, type InstanceCgroup, openCgroups } from "./cgroup.ts";
import { createCpuPool, loadAffinity, pinProcess, threadEnv } from "./cpus.ts";
import { createGpuPool, gpuEnv, listGpus } from "./gpus.ts";
import type { ChildUsage } from "./libc.ts";
import { createUsageWatcher, mib, type TreeUsage, type UsageWatcher } from "./usage.ts";

/** What an instance used, and the error when it went over its memory. */
export interface HoldEnd extends TreeUsage {
  /** "exceeded its memory of 64 MiB (peak 190 MiB)", or null. */
  memoryError: string | null;
}

/** One instance's share of the node, from before its spawn to its end. */
export interface Hold {
  /** Call at once when its process started: pins it, moves it into its cgroup and starts watching it. */
  started(pid: number, kill: (why: string) => void): void;
  /** Call when it ended: what it used; then gives back its CPUs, GPUs and cgroup. */
  end(child: ChildUsage | null): HoldEnd;
}

/** A node's resource holding. */
export interface NodeResources {
  /** How this node enforces limits (reported to the manager; `parallelic doctor` shows it). */
  readonly limits: NodeLimits;
  /** The GPUs it found. */
  readonly gpuDevices: GpuDevice[];
  /** GPUs it offers. */
  readonly gpus: number;
  /** Whether an instance's GPUs are free now (the manager counts them too; this covers a release still pending). */
  fits(run: RunSpec): boolean;
  /** Takes what an instance asked for and sets its environment accordingly. */
  hold(ref: InstanceRef, run: RunSpec, env: Record<string, string>): Hold;
  /** Removes the node's cgroup sub-tree. */
  close(): Promise<void>;
}

/** Options of {@linkcode openResources}. */
export interface ResourceOptions {
  node: string;
  clock: Clock;
  log: Logger;
  /** GPUs offered, overriding what nvidia-smi lists (devices 0 to N-1). */
  gpus?: number;
  /** No cgroups even where they could be made (tests of the RSS watch). */
  noCgroups?: boolean;
}

/** Looks at what the node has and how it can hold instances to their resources. */
export async function openResources(options: ResourceOptions): Promise<NodeResources> {
  const { clock, log } = options;
  const affinity = loadAffinity();
  const cpuPool = createCpuPool(affinity?.allowed() ?? []);
  const gpuDevices = await listGpus();
  const gpus = options.gpus ?? gpuDevices.length;
  const gpuIndices = gpuDevices.length >= gpus
    ? gpuDevices.slice(0, gpus).map((g) => g.index)
    : Array.from({ length: gpus }, (_, i) => i);
  const gpuPool = createGpuPool(gpuIndices);
  const cgroups: Cgroups | null = options.noCgroups ? null : await openCgroups(options.node).catch(() => null);
  const watcher = createUsageWatcher({ clock });
  const limits: NodeLimits = {
    cpus: affinity ? "sched_setaffinity" : "none",
    memory: cgroups?.memory ? "cgroup2" : "rss-watch",
    usage: cgroups ? "cgroup2" : "proc",
    ...cgroups ? { cgroupFavorDynmods: cgroups.favorDynmods } : {},
  };
  log.info("node:limits", { ...limits, cpus: cpuPool.cpus.length, gpus, cgroup: cgroups?.base ?? null });

  return {
    limits,
    gpuDevices,
    gpus,
    fits: (run) => (run.gpus ?? 0) <= gpuPool.free,
    hold(ref, run, env) {
      const cpus = affinity ? cpuPool.take(run.cpus) : [];
      threadEnv(env, run.env, run.cpus);
      const gpuList = run.gpus > 0 ? gpuPool.take(run.gpus) ?? [] : [];
      if (gpuIndices.length > 0 || run.gpus > 0) gpuEnv(env, gpuList);
      const memoryBytes = run.memoryBytes ?? 0;
      const cgroup: InstanceCgroup | null = cgroups?.create(`${ref.taskId}-${ref.index}-${ref.attempt}`, memoryBytes) ??
        null;
      let watch: ReturnType<UsageWatcher["watch"]> | undefined;
      let overBytes = 0;
      const pin = (pid: number) => {
        if (cgroup) cgroup.add(pid);
        if (cpus.length > 0) pinProcess(affinity!, pid, cpus);
      };
      return {
        started(pid, kill) {
          const joined = cgroup?.add(pid) ?? false;
          if (cpus.length > 0) pinProcess(affinity!, pid, cpus);
          watch = watcher.watch({
            pid,
            cgroup: joined ? cgroup : null,
            // Where the cgroup holds memory, the kernel enforces it.
            memoryBytes: cgroups?.memory ? 0 : memoryBytes,
            adopt: pin,
            onOverMemory(bytes) {
              overBytes = bytes;
              kill(`exceeded its memory of ${mib(memoryBytes)} (peak ${mib(bytes)})`);
            },
          });
        },
        end(child) {
          const seen = watch?.stop() ?? { cpuMs: 0, maxRssBytes: 0 };
          const fromCgroup = cgroup?.usage();
          const cpuMs = Math.max(seen.cpuMs, child?.cpuMs ?? 0, fromCgroup?.cpuMs ?? 0);
          const maxRssBytes = Math.max(seen.maxRssBytes, child?.maxRssBytes ?? 0, fromCgroup?.memoryBytes ?? 0);
          let memoryError: string | null = null;
          if (overBytes > 0 || fromCgroup?.oomKilled) {
            memoryError = `exceeded its memory of ${mib(memoryBytes)} (peak ${mib(Math.max(overBytes, maxRssBytes))})`;
          }
          if (cpus.length > 0) cpuPool.release(cpus);
          gpuPool.release(gpuList);
          void cgroup?.remove();
          return { cpuMs, maxRssBytes, memoryError };
        },
      };
    },
    close: () => cgroups?.close() ?? Promise.resolve(),
  };
}
