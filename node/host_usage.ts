/**
 * What the machine a node runs on is using, for its heartbeats: the share of
 * CPU time busy since the last reading (every core together) and the memory
 * in use (total minus available).
 *
 * @module
 */
import { cpus } from "node:os";

/** One reading; a field the system does not tell is absent. */
export interface HostUsage {
  /** Share of CPU time busy since the reading before, 0 to 1. */
  cpuBusy?: number;
  /** Memory in use, bytes. */
  memoryUsedBytes?: number;
}

function cpuTimes(): { busy: number; total: number } | null {
  try {
    let busy = 0;
    let total = 0;
    for (const { times } of cpus()) {
      const all = times.user + times.nice + times.sys + times.irq + times.idle;
      total += all;
      busy += all - times.idle;
    }
    return total > 0 ? { busy, total } : null;
  } catch {
    return null;
  }
}

/** Returns a function that reads the machine's use; each call measures CPU since the call before. */
export function hostUsageReader(): () => HostUsage {
  let last = cpuTimes();
  return () => {
    const out: HostUsage = {};
    const now = cpuTimes();
    if (now && last && now.total > last.total) {
      out.cpuBusy = Math.min(1, Math.max(0, (now.busy - last.busy) / (now.total - last.total)));
    }
    last = now;
    try {
      const mem = Deno.systemMemoryInfo();
      out.memoryUsedBytes = Math.max(0, mem.total - mem.available);
    } catch { /* not told on this system */ }
    return out;
  };
}
