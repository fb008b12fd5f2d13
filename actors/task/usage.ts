/**
 * What instances used: each attempt's CPU time and peak memory as its node
 * measured them, kept in its history, and the task's totals kept up to date
 * as results land (status reads never sum instances).
 *
 * @module
 */
import type { Metrics } from "../../core/metrics.ts";
import type { Attempt, Result, TaskRecord } from "../../core/schema.ts";

/** Buckets of `parallelic_instance_max_rss_bytes`: 16 MiB to 64 GiB by fours. */
const RSS_BUCKETS = [2 ** 24, 2 ** 26, 2 ** 28, 2 ** 30, 2 ** 32, 2 ** 34, 2 ** 36];

/**
 * Returns a function that records an attempt's usage: in its history entry,
 * in the task's totals and in the manager's metrics.
 */
export function usageRecorder(metrics: Metrics): (task: TaskRecord, entry: Attempt, r: Result) => void {
  const cpuSeconds = metrics.counter(
    "parallelic_instance_cpu_seconds_total",
    "CPU time (user + system) of instance attempts' process trees, by task owner.",
  );
  const maxRss = metrics.histogram(
    "parallelic_instance_max_rss_bytes",
    "Peak memory of instance attempts' process trees.",
    RSS_BUCKETS,
  );
  return (task, entry, r) => {
    const cpuMs = r.cpuMs ?? 0;
    const maxRssBytes = r.maxRssBytes ?? 0;
    // Older nodes report neither: the entry stays without them rather than claiming zero.
    if (cpuMs > 0 || maxRssBytes > 0) {
      entry.cpuMs = cpuMs;
      entry.maxRssBytes = maxRssBytes;
      cpuSeconds.inc({ owner: task.owner }, cpuMs / 1000);
      maxRss.observe(maxRssBytes);
    }
    task.cpuMs = (task.cpuMs ?? 0) + cpuMs;
    task.maxRssBytes = Math.max(task.maxRssBytes ?? 0, maxRssBytes);
    if (r.startedAt !== null) task.wallMs = (task.wallMs ?? 0) + Math.max(0, r.endedAt - r.startedAt);
  };
}
