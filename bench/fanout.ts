/**
 * Fan-out benchmark: a manager (embedded NATS, no local node) and two node
 * processes of one slot each run N instances of `true`; in the same run,
 * `seq N | xargs -P2 -n1 true` and `parallel -j2 true` on the same machine.
 *
 * Parallelic, xargs and GNU parallel run in turn, `--rounds` times, and each
 * ratio is taken between runs of the same round, so that the load of
 * whoever else shares the machine weighs on all alike (the median of the
 * rounds' ratios is reported). Beside wall times: the CPU time every tool spent per instance
 * (Parallelic: manager, nats-server, nodes and the instances), which the
 * load of others changes far less than wall times.
 *
 *   deno run -A bench/fanout.ts [--instances 10000] [--rounds 3] [--no-gnu-parallel] [--node-dir /dev/shm]
 *                               [--nats-servers 3] [--no-record]
 *
 * `--nats-servers 3` runs the engine on a 3-server NATS cluster with every
 * bucket and stream replicated 3 times, instead of one server.
 *
 * Targets (BENCHMARKS.md): Parallelic within 1.5x of xargs, and at least 4x
 * faster than GNU parallel.
 *
 * @module
 */
import { type Benchmark, fmt, intArg, percentile, procStats, runBenchmark, table } from "./_util.ts";
import { type BenchCluster, startCluster, truePackage } from "./cluster.ts";

/** A run's wall time and the CPU time it used, seconds. */
interface Run {
  wall: number;
  cpu: number;
}

/** Runs a shell pipeline; its CPU time is what bash's `times` says its children used. */
async function sh(command: string): Promise<Run> {
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: ["-c", `${command} >/dev/null; times`],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const wall = (performance.now() - t0) / 1000;
  if (!out.success) throw new Error(`'${command}' failed: ${new TextDecoder().decode(out.stderr)}`);
  // `times` prints the shell's user and system time, then its children's: "0m1.234s 0m0.567s".
  const children = new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!;
  const cpu = [...children.matchAll(/(\d+)m([\d.]+)s/g)].reduce((s, m) => s + Number(m[1]) * 60 + Number(m[2]), 0);
  return { wall, cpu };
}

const hasCommand = async (name: string) =>
  (await new Deno.Command("bash", { args: ["-c", `command -v ${name}`], stdout: "null" }).output()).success;

/** CPU seconds used so far by the manager, its nats-server, the nodes and the instances they ran. */
async function clusterCpu(cluster: BenchCluster): Promise<Record<"manager" | "nats" | "nodes" | "instances", number>> {
  const manager = await procStats(cluster.pid);
  const nodes = await Promise.all(cluster.nodes.map((n) => procStats(n.child.pid)));
  return {
    manager: manager.cpuSeconds,
    nats: (await cluster.natsStats())?.cpuSeconds ?? 0,
    nodes: nodes.reduce((s, p) => s + p.cpuSeconds, 0),
    instances: nodes.reduce((s, p) => s + p.childCpuSeconds, 0),
  };
}

const sum = (cpu: Record<string, number>) => Object.values(cpu).reduce((a, b) => a + b, 0);

/** The fan-out benchmark. */
export const fanout: Benchmark = {
  name: "fanout",
  summary: "10,000 instances of `true` on 2 nodes x 1 slot vs xargs -P2 and GNU parallel -j2",
  flags: {
    instances: "string",
    rounds: "string",
    "gnu-parallel": "boolean",
    "node-dir": "string",
    "nats-servers": "string",
  },
  tiny: ["--instances", "20", "--rounds", "1"],
  async run(ctx) {
    const instances = intArg(ctx.args, "instances", 10_000);
    const rounds = Math.max(1, intArg(ctx.args, "rounds", 3));
    // Where the nodes copy task roots: say /dev/shm (tmpfs) to see what the file system costs.
    const nodeDir = ctx.args.flags["node-dir"] as string | undefined;
    const workDir = nodeDir ? await Deno.makeTempDir({ dir: nodeDir, prefix: "parallelic-bench-" }) : undefined;
    await using _removed = {
      [Symbol.asyncDispose]: async () => void (workDir && await Deno.remove(workDir, { recursive: true })),
    };
    const natsServers = Math.max(1, intArg(ctx.args, "nats-servers", 1));
    await using cluster = await startCluster(ctx, { natsServers });
    await cluster.addNodes(2, { slots: 1, workDir });
    // The package holds a copy of `true`, and the other tools run that same binary.
    const zip = await truePackage(ctx.dir, instances);
    const parallelic: Run[] = [];
    const xargs: Run[] = [];
    const gnuParallel: Run[] = [];
    const withParallel = ctx.args.flags["gnu-parallel"] !== false && await hasCommand("parallel");
    const spent = { manager: 0, nats: 0, nodes: 0, instances: 0 };
    for (let round = 0; round < rounds; round++) {
      const cpu0 = await clusterCpu(cluster);
      const t0 = performance.now();
      const { id } = await cluster.submit(zip);
      const done = await cluster.done(id);
      const wall = (performance.now() - t0) / 1000;
      if (done.state !== "succeeded") throw new Error(`task ${done.state}: ${JSON.stringify(done.counts)}`);
      const cpu1 = await clusterCpu(cluster);
      for (const k of Object.keys(spent) as Array<keyof typeof spent>) spent[k] += cpu1[k] - cpu0[k];
      parallelic.push({ wall, cpu: sum(cpu1) - sum(cpu0) });
      xargs.push(await sh(`seq ${instances} | xargs -P2 -n1 /usr/bin/true`));
      if (withParallel) gnuParallel.push(await sh(`seq ${instances} | parallel -j2 /usr/bin/true`));
    }

    const median = (runs: Run[], k: keyof Run) => percentile(runs.map((r) => r[k]), 50);
    const ratio = percentile(parallelic.map((p, i) => p.wall / xargs[i].wall), 50);
    const vsParallel = percentile(gnuParallel.map((g, i) => g.wall / parallelic[i].wall), 50);
    const row = (tool: string, runs: Run[]) => [
      tool,
      fmt(median(runs, "wall"), 3),
      runs.length > 1
        ? `${fmt(Math.min(...runs.map((r) => r.wall)), 3)} - ${fmt(Math.max(...runs.map((r) => r.wall)), 3)}`
        : "",
      fmt(median(runs, "wall") / instances * 1000, 3),
      fmt(median(runs, "cpu") / instances * 1000, 3),
      tool.startsWith("parallelic") ? fmt(ratio, 2) : fmt(median(runs, "wall") / median(xargs, "wall"), 2),
    ];
    const text = [
      `Fan-out: ${fmt(instances)} instances of \`true\`, ${rounds} alternating rounds; Parallelic ` +
      `${fmt(ratio, 2)}x xargs (median of the rounds' ratios; target <= 1.5x: ${ratio <= 1.5 ? "met" : "missed"}), ` +
      (withParallel
        ? `GNU parallel ${fmt(vsParallel, 2)}x Parallelic (median of the rounds' ratios; target >= 4x: ${
          vsParallel >= 4 ? "met" : "missed"
        }).`
        : "GNU parallel was not run (--no-gnu-parallel, or not installed: apt-get install parallel)."),
      "",
      table(["tool", "wall s (median)", "range", "ms/instance", "CPU ms/instance", "vs xargs"], [
        row(
          `parallelic (2 nodes x 1 slot${natsServers > 1 ? `, ${natsServers} NATS servers, R${natsServers}` : ""})`,
          parallelic,
        ),
        row("xargs -P2", xargs),
        ...withParallel ? [row("GNU parallel -j2", gnuParallel)] : [],
      ]),
      "",
      `CPU ms/instance counts every process a tool used; the load of others changes it far less than wall times. ` +
      `Parallelic's, ` +
      `per instance: ${
        Object.entries(spent).map(([k, v]) => `${k} ${fmt(v / rounds / instances * 1e6)} µs`).join(", ")
      }.`,
    ].join("\n");
    return {
      command: `--instances ${instances} --rounds ${rounds}${withParallel ? "" : " --no-gnu-parallel"}` +
        (nodeDir ? ` --node-dir ${nodeDir}` : ""),
      text: nodeDir
        ? `${text}

The nodes' work dirs were under ${nodeDir}.`
        : text,
    };
  },
};

if (import.meta.main) await runBenchmark(fanout, Deno.args);
