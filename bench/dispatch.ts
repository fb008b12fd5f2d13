/**
 * Dispatch-only benchmark: a task of 100,000 instances on nodes that report
 * every instance done at once without running anything (`--bench-noop`), so
 * that what is measured is the manager, NATS and Deno KV alone. In the same
 * run: raw NATS request/reply and raw Deno KV write rates on this machine.
 *
 *   deno run -A bench/dispatch.ts [--instances 100000] [--nodes 2] [--slots 8] [--raw-ops 20000] [--no-record]
 *
 * Target (BENCHMARKS.md): at least 20,000 instances/s.
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { join } from "node:path";
import type { InstanceRecord } from "../core/schema.ts";
import { writeBatched } from "../core/kv.ts";
import { type Benchmark, fmt, intArg, procStats, runBenchmark, table, time } from "./_util.ts";
import { startCluster, truePackage } from "./cluster.ts";

/** Requests answered per second by a responder on another connection, `inFlight` at a time. */
async function natsRequestRate(natsUrl: string, count: number, inFlight: number): Promise<number> {
  const server = await connect({ servers: natsUrl });
  const client = await connect({ servers: natsUrl });
  try {
    server.subscribe("bench.echo", { callback: (_e, m) => void m.respond(m.data) });
    await server.flush();
    const payload = new TextEncoder().encode(JSON.stringify({ node: "bench-0", results: [] }));
    let sent = 0;
    const seconds = await time(() =>
      Promise.all(Array.from({ length: inFlight }, async () => {
        while (sent < count) {
          sent++;
          await client.request("bench.echo", payload, { timeout: 10_000 });
        }
      }))
    );
    return count / seconds;
  } finally {
    await client.close();
    await server.close();
  }
}

/** An instance record as the task actor writes it when an instance ends. */
const instanceRecord = (index: number): InstanceRecord => ({
  index,
  state: "succeeded",
  attempt: 0,
  node: "bench-0",
  notBefore: null,
  history: [{
    attempt: 0,
    node: "bench-0",
    assignedAt: 1_700_000_000_000,
    startedAt: 1_700_000_000_001,
    endedAt: 1_700_000_000_002,
    exitCode: 0,
    signal: null,
    error: null,
  }],
});

/** Deno KV writes per second: one `set` at a time, and in atomics as the task actor batches them. */
async function kvWriteRates(path: string, count: number): Promise<{ single: number; batched: number }> {
  const kv = await Deno.openKv(path);
  try {
    const singles = Math.max(1, Math.floor(count / 10));
    const single = singles / await time(async () => {
      for (let i = 0; i < singles; i++) await kv.set(["instance", "tsingle", i], instanceRecord(i));
    });
    const entries = Array.from({ length: count }, (_, i) => ({
      key: ["instance", "tbatched", i] as Deno.KvKey,
      value: instanceRecord(i),
    }));
    const batched = count / await time(() => writeBatched(kv, entries));
    return { single, batched };
  } finally {
    kv.close();
  }
}

/** The dispatch-only benchmark. */
export const dispatch: Benchmark = {
  name: "dispatch",
  summary: "100,000 instances on no-op nodes: instances/s through manager, NATS and Deno KV",
  flags: { instances: "string", nodes: "string", slots: "string", "raw-ops": "string" },
  tiny: ["--instances", "300", "--nodes", "1", "--raw-ops", "500"],
  async run(ctx) {
    const instances = intArg(ctx.args, "instances", 100_000);
    const nodeCount = intArg(ctx.args, "nodes", 2);
    const slots = intArg(ctx.args, "slots", 8);
    const rawOps = intArg(ctx.args, "raw-ops", 20_000);
    await using cluster = await startCluster(ctx);
    await cluster.addNodes(nodeCount, { slots, noop: true });

    const natsSerial = await natsRequestRate(cluster.natsUrl, Math.max(100, Math.floor(rawOps / 4)), 1);
    const natsPipelined = await natsRequestRate(cluster.natsUrl, rawOps, 64);
    const kvRates = await kvWriteRates(join(ctx.dir, "raw.kv"), rawOps);

    const zip = await truePackage(ctx.dir, instances);
    const pids = { manager: cluster.pid, nodes: cluster.nodes.map((n) => n.child.pid) };
    const cpu = async () => ({
      manager: (await procStats(pids.manager)).cpuSeconds,
      nats: (await cluster.natsStats())?.cpuSeconds ?? NaN,
      nodes: (await Promise.all(pids.nodes.map(procStats))).reduce((s, p) => s + p.cpuSeconds, 0),
    });
    const cpu0 = await cpu();
    const t0 = performance.now();
    const { id } = await cluster.submit(zip);
    const done = await cluster.done(id);
    const seconds = (performance.now() - t0) / 1000;
    const cpu1 = await cpu();
    if (done.state !== "succeeded") throw new Error(`Task ${id} ended ${done.state}: ${JSON.stringify(done.counts)}`);
    const rss = await cluster.managerStats();
    const rate = instances / seconds;

    const rows = [
      [`parallelic, ${nodeCount} no-op nodes x ${slots} slots`, fmt(rate), `${fmt(seconds, 2)} s wall`],
      ["NATS request/reply, 1 in flight", fmt(natsSerial), "round trips/s"],
      ["NATS request/reply, 64 in flight", fmt(natsPipelined), "round trips/s"],
      ["Deno KV, one set at a time", fmt(kvRates.single), "writes/s"],
      ["Deno KV, atomics of 500 sets (as the task actor writes)", fmt(kvRates.batched), "writes/s"],
    ];
    const cpuLine = (k: "manager" | "nats" | "nodes") => `${k} ${fmt(cpu1[k] - cpu0[k], 2)} s`;
    return {
      command: `--instances ${instances} --nodes ${nodeCount} --slots ${slots} --raw-ops ${rawOps}`,
      text: [
        `Dispatch only: ${fmt(instances)} instances in ${fmt(seconds, 2)} s = **${fmt(rate)} instances/s** ` +
        `(target >= 20,000: ${rate >= 20_000 ? "met" : "missed"}). ` +
        `Each instance costs one Deno KV write (its record when it ends) and a share of its span's two (sent, ` +
        `all ended), so the batched KV write rate, ${fmt(kvRates.batched)}/s, bounds it.`,
        "",
        table(["path", "per second", "note"], rows),
        "",
        `CPU time during the run: ${cpuLine("manager")}, ${cpuLine("nats")}, ${cpuLine("nodes")} ` +
        `(wall ${fmt(seconds, 2)} s, 2 cores). Manager resident memory afterwards ${
          fmt(rss.rssBytes / 2 ** 20)
        } MiB, ` +
        `peak ${fmt(rss.peakRssBytes / 2 ** 20)} MiB.`,
      ].join("\n"),
    };
  },
};

if (import.meta.main) await runBenchmark(dispatch, Deno.args);
