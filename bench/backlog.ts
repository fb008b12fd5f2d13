/**
 * Backlog growth benchmark: a manager with no node holds ever more queued
 * instances, 1,000 / 10,000 / 100,000 / 1,000,000, submitted as tasks of
 * 1,000 instances each (so 1,000 tasks at the end), then one task of
 * 1,000,000 on top; at each level it reports
 * the submit time, the manager's resident memory, the size of its Deno KV
 * file, and how long status reads take while the backlog stands.
 *
 *   deno run -A bench/backlog.ts [--levels 1000,10000,100000,1000000] [--task-size 1000] [--big 1000000] [--reads 20] [--no-record]
 *
 * Targets (BENCHMARKS.md): status reads under 50 ms and the manager under 1 GiB
 * resident at 1,000,000 queued instances; cost linear or better in stored
 * size, flat for status reads.
 *
 * @module
 */
import type { TaskView } from "../core/schema.ts";
import { type Benchmark, fmt, intArg, intListArg, kvBytes, mib, percentile, runBenchmark, table } from "./_util.ts";
import { type BenchCluster, startCluster, truePackage } from "./cluster.ts";

/** p50 and max of `reads` timed GETs of `path`, in ms. */
async function timeReads(cluster: BenchCluster, path: string, reads: number): Promise<{ p50: number; max: number }> {
  const ms: number[] = [];
  for (let i = 0; i < reads; i++) {
    const t0 = performance.now();
    const res = await cluster.api(path);
    await res.arrayBuffer();
    if (!res.ok) throw new Error(`GET ${path} answered ${res.status}`);
    ms.push(performance.now() - t0);
  }
  return { p50: percentile(ms, 50), max: Math.max(...ms) };
}

/** The backlog-growth benchmark. */
export const backlog: Benchmark = {
  name: "backlog",
  summary: "1,000 → 1,000,000 queued instances: submit time, manager memory, KV size, status read times",
  flags: { levels: "string", "task-size": "string", big: "string", reads: "string", concurrency: "string" },
  tiny: ["--levels", "10,40", "--task-size", "10", "--big", "100", "--reads", "3"],
  async run(ctx) {
    const levels = intListArg(ctx.args, "levels", [1_000, 10_000, 100_000, 1_000_000]);
    const taskSize = intArg(ctx.args, "task-size", 1_000);
    const reads = intArg(ctx.args, "reads", 20);
    const concurrency = intArg(ctx.args, "concurrency", 4);
    const big = intArg(ctx.args, "big", 1_000_000);
    await using cluster = await startCluster(ctx);
    const zip = await truePackage(ctx.dir, taskSize);
    const idle = await cluster.managerStats();
    const ids: string[] = [];
    let queued = 0;
    const rows: Array<Array<string | number>> = [];
    let last = { status: 0, list: 0, rss: 0 };
    /** Submits `count` copies of `pkg` (of `size` instances each), then measures while the backlog stands. */
    const step = async (label: string, pkg: Uint8Array, size: number, count: number) => {
      const t0 = performance.now();
      let next = 0;
      const stepIds: string[] = [];
      await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
        while (next < count) {
          next++;
          stepIds.push((await cluster.submit(pkg)).id);
        }
      }));
      const submitS = (performance.now() - t0) / 1000;
      ids.push(...stepIds);
      queued += count * size;
      // Every task is still queued: nothing may have run.
      const first = await cluster.json<TaskView>(`/api/v1/tasks/${ids[0]}`);
      if (first.state !== "queued") throw new Error(`Task ${ids[0]} is ${first.state}, not queued`);
      const probe = stepIds[Math.floor(stepIds.length / 2)];
      const status = await timeReads(cluster, `/api/v1/tasks/${probe}`, reads);
      const list = await timeReads(cluster, "/api/v1/tasks", reads);
      const instance = await timeReads(cluster, `/api/v1/tasks/${probe}/instances/${size - 1}`, reads);
      const explain = await timeReads(cluster, `/api/v1/tasks/${probe}/explain`, reads);
      const stats = await cluster.managerStats();
      last = { status: status.p50, list: list.p50, rss: stats.rssBytes };
      const pair = (r: { p50: number; max: number }) => `${fmt(r.p50, 2)} / ${fmt(r.max, 2)}`;
      rows.push([
        label,
        fmt(queued),
        fmt(ids.length),
        `${fmt(submitS, 2)} (${fmt(submitS / count * 1000, 1)} ms/task)`,
        mib(stats.rssBytes),
        mib(await kvBytes(cluster.kvFile)),
        pair(status),
        pair(list),
        pair(instance),
        pair(explain),
      ]);
    };
    for (const level of levels) {
      const count = Math.ceil((level - queued) / taskSize);
      await step(`${fmt(count)} x ${fmt(taskSize)}`, zip, taskSize, count);
    }
    if (big > 0) await step(`1 x ${fmt(big)}`, await truePackage(ctx.dir, big), big, 1);
    const met = last.status < 50 && last.list < 50 && last.rss < 2 ** 30;
    return {
      command: `--levels ${levels.join(",")} --task-size ${taskSize} --big ${big} --reads ${reads} ` +
        `--concurrency ${concurrency}`,
      text: [
        `Backlog: up to ${fmt(queued)} queued instances in ${fmt(ids.length)} tasks, no node: tasks of ` +
        `${fmt(taskSize)} instances up to ${fmt(levels.at(-1)!)}${big ? `, then one task of ${fmt(big)}` : ""}. ` +
        `At the top: task status p50 ${fmt(last.status, 2)} ms, task list p50 ${fmt(last.list, 2)} ms, manager ` +
        `${mib(last.rss)} resident (targets < 50 ms and < 1 GiB: ${met ? "met" : "missed"}). ` +
        `The idle manager held ${mib(idle.rssBytes)} before the first submit. ` +
        `Reads are p50 / max of ${reads} GETs, ms.`,
        "",
        table(
          [
            "added (tasks x instances)",
            "queued instances",
            "tasks",
            "submit s",
            "manager RSS",
            "KV size",
            "GET task",
            "GET tasks (list of 100)",
            "GET instance",
            "GET explain",
          ],
          rows,
        ),
      ].join("\n"),
    };
  },
};

if (import.meta.main) await runBenchmark(backlog, Deno.args);
