/**
 * Many-nodes benchmark: 50 node processes of one slot each on this machine.
 * Reports the heartbeat load on the manager (its CPU time over a quiet
 * interval, beside the same interval with no node), and the placement rate:
 * a task of 20,000 instances on the 50 nodes in no-op mode (`--bench-noop`:
 * nodes report instances done without running them, so that two cores are
 * not spent on 50 processes' spawns), with how evenly it spread.
 *
 *   deno run -A bench/many_nodes.ts [--nodes 50] [--instances 20000] [--quiet-s 10] [--no-record]
 *
 * Each node is a Deno process of about 60-100 MiB.
 *
 * @module
 */
import type { InstanceView } from "../core/schema.ts";
import { type Benchmark, fmt, intArg, mib, procStats, runBenchmark, sleep, table } from "./_util.ts";
import { type BenchCluster, startCluster, truePackage } from "./cluster.ts";

/** Manager and nats-server CPU seconds used over `seconds` of wall time. */
async function cpuOver(cluster: BenchCluster, seconds: number): Promise<{ manager: number; nats: number }> {
  const m0 = (await cluster.managerStats()).cpuSeconds;
  const n0 = (await cluster.natsStats())?.cpuSeconds ?? NaN;
  await sleep(seconds * 1000);
  return {
    manager: (await cluster.managerStats()).cpuSeconds - m0,
    nats: ((await cluster.natsStats())?.cpuSeconds ?? NaN) - n0,
  };
}

/** The many-nodes benchmark. */
export const manyNodes: Benchmark = {
  name: "many_nodes",
  summary: "50 nodes of 1 slot: heartbeat load on the manager and placement rate",
  flags: { nodes: "string", instances: "string", "quiet-s": "string" },
  tiny: ["--nodes", "3", "--instances", "100", "--quiet-s", "1"],
  async run(ctx) {
    let nodeCount = intArg(ctx.args, "nodes", 50);
    const instances = intArg(ctx.args, "instances", 20_000);
    const quietS = intArg(ctx.args, "quiet-s", 10);
    // Leave room for everyone else on this machine: about 150 MiB per node and 2 GiB spare.
    const affordable = Math.floor((Deno.systemMemoryInfo().available - 2 * 2 ** 30) / (150 * 2 ** 20));
    const notes: string[] = [];
    if (affordable < nodeCount) {
      notes.push(`Only ${affordable} nodes fit in the free memory; ${nodeCount} were asked for.`);
      nodeCount = Math.max(1, affordable);
    }
    await using cluster = await startCluster(ctx);
    const settleMs = Math.min(2, quietS) * 1000;
    await sleep(settleMs);
    const idle = await cpuOver(cluster, quietS);
    const t0 = performance.now();
    await cluster.addNodes(nodeCount, { slots: 1, noop: true });
    const joinS = (performance.now() - t0) / 1000;
    await sleep(settleMs);
    const busy = await cpuOver(cluster, quietS);
    const nodeRss = (await Promise.all(cluster.nodes.map((n) => procStats(n.child.pid)))).map((s) => s.rssBytes);

    const zip = await truePackage(ctx.dir, instances);
    const m0 = (await cluster.managerStats()).cpuSeconds;
    const t1 = performance.now();
    const { id } = await cluster.submit(zip);
    const done = await cluster.done(id);
    const placeS = (performance.now() - t1) / 1000;
    const placeCpu = (await cluster.managerStats()).cpuSeconds - m0;
    if (done.state !== "succeeded") throw new Error(`Task ${id} ended ${done.state}`);
    const perNode = new Map<string, number>();
    for (let from = 0; from < instances; from += 10_000) {
      const page = await cluster.json<{ instances: InstanceView[] }>(
        `/api/v1/tasks/${id}/instances?from=${from}&limit=10000`,
      );
      for (const i of page.instances) perNode.set(i.node ?? "?", (perNode.get(i.node ?? "?") ?? 0) + 1);
    }
    const counts = [...perNode.values()];
    const manager = await cluster.managerStats();

    const heartbeats = nodeCount * quietS; // one per node per second (--heartbeat-ms 1000)
    const extraCpu = busy.manager - idle.manager;
    return {
      command: `--nodes ${nodeCount} --instances ${instances} --quiet-s ${quietS}`,
      text: [
        `Many nodes: ${nodeCount} node processes of 1 slot joined in ${fmt(joinS, 1)} s. Heartbeat load: the manager ` +
        `used ${fmt(busy.manager / quietS * 100, 2)}% of a core with them (${fmt(idle.manager / quietS * 100, 2)}% ` +
        `with none), about ${fmt(Math.max(0, extraCpu) / heartbeats * 1e6)} µs of CPU per heartbeat. Placement: ` +
        `${fmt(instances)} no-op instances in ${fmt(placeS, 2)} s = **${fmt(instances / placeS)} instances/s** over ` +
        `${perNode.size} nodes (${fmt(Math.min(...counts))} to ${fmt(Math.max(...counts))} each).`,
        ...notes.length ? ["", ...notes] : [],
        "",
        table(["measure", "value"], [
          [`manager CPU over ${quietS} s, no node`, `${fmt(idle.manager, 3)} s`],
          [`manager CPU over ${quietS} s, ${nodeCount} idle nodes (heartbeat every 1 s)`, `${fmt(busy.manager, 3)} s`],
          [
            `nats-server CPU over ${quietS} s, no node / ${nodeCount} nodes`,
            `${fmt(idle.nats, 3)} / ${fmt(busy.nats, 3)} s`,
          ],
          ["placement rate (no-op instances)", `${fmt(instances / placeS)} /s`],
          ["manager CPU per placed instance", `${fmt(placeCpu / instances * 1e6)} µs`],
          ["instances per node (min / max)", `${fmt(Math.min(...counts))} / ${fmt(Math.max(...counts))}`],
          ["manager resident memory after", mib(manager.rssBytes)],
          [
            "node resident memory (mean / max)",
            `${mib(nodeRss.reduce((a, b) => a + b, 0) / nodeRss.length)} / ${mib(Math.max(...nodeRss))}`,
          ],
        ]),
      ].join("\n"),
    };
  },
};

if (import.meta.main) await runBenchmark(manyNodes, Deno.args);
