/**
 * Fan-out benchmark: N instances that do nothing, on two set-ups of 2 slots —
 * the README's (`bash dev.sh start`: a manager with its local node, here of
 * 2 slots) and a manager with two node processes of one slot — each with two
 * entrypoints: a copy of `true` (a binary) and a one-line shell script (what
 * users write). In the same run, the same work through `xargs -P2` (the least
 * a local fan-out can cost), GNU `parallel -j2` and Dask distributed (a
 * LocalCluster of 2 single-thread worker processes, each task running the
 * same copy of `true` as a subprocess; `bench/fanout_dask.py`).
 *
 * Every tool runs in turn, `--rounds` times, and each ratio is taken between
 * runs of the same round, so that the load of whoever else shares the
 * machine weighs on all alike (the median of the rounds' ratios is
 * reported). Beside wall times: the CPU time every tool spent per instance
 * (Parallelic: manager, nats-server, nodes and the instances), which the
 * load of others changes far less than wall times.
 *
 *   deno run -A bench/fanout.ts [--instances 6000] [--rounds 3] [--setups local,nodes]
 *                               [--entrypoints binary,script] [--no-gnu-parallel] [--no-dask]
 *                               [--node-dir /dev/shm] [--nats-servers 3] [--no-record]
 *
 * `--nats-servers 3` runs the engine on a 3-server NATS cluster with every
 * bucket and stream replicated 3 times, instead of one server.
 *
 * Targets (BENCHMARKS.md): Parallelic within 1.1x of xargs running the same
 * entrypoint, at least 6x faster than GNU parallel and 4x faster than Dask.
 *
 * @module
 */
import { join } from "node:path";
import { zipFolder } from "../core/package_zip.ts";
import { type Benchmark, fmt, intArg, percentile, procStats, ROOT, runBenchmark, table } from "./_util.ts";
import { type BenchCluster, startCluster } from "./cluster.ts";

/** A run's wall time and the CPU time it used, seconds; for Parallelic, the CPU time of each process. */
interface Run {
  wall: number;
  cpu: number;
  parts?: Cpu;
}

type Cpu = Record<"manager" | "nats" | "nodes" | "instances", number>;

/** The two set-ups, both of 2 slots. */
const SETUPS = {
  local: "manager + its local node (2 slots)",
  nodes: "manager + 2 nodes x 1 slot",
} as const;
type Setup = keyof typeof SETUPS;

/** What each instance runs: a copy of `true`, or a shell script of one line. */
const ENTRYPOINTS = { binary: "true", script: "script.sh" } as const;
type Entrypoint = keyof typeof ENTRYPOINTS;
const SCRIPT = "#!/bin/sh\ntrue\n";

/** Runs a shell pipeline; its CPU time is what bash's `times` says its children used. */
async function sh(command: string, cwd: string): Promise<Run> {
  const t0 = performance.now();
  const out = await new Deno.Command("bash", {
    args: ["-c", `${command} >/dev/null; times`],
    cwd,
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
async function clusterCpu(cluster: BenchCluster): Promise<Cpu> {
  const manager = await procStats(cluster.pid);
  const nodes = await Promise.all(cluster.nodes.map((n) => procStats(n.child.pid)));
  return {
    manager: manager.cpuSeconds,
    nats: (await cluster.natsStats())?.cpuSeconds ?? 0,
    nodes: nodes.reduce((s, p) => s + p.cpuSeconds, 0),
    // A local node's instances are the manager's children.
    instances: manager.childCpuSeconds + nodes.reduce((s, p) => s + p.childCpuSeconds, 0),
  };
}

const sum = (cpu: Record<string, number>) => Object.values(cpu).reduce((a, b) => a + b, 0);

/** Dask distributed in a Python process of its own (Debian's python3-distributed), run a round at a time. */
async function startDask(program: string) {
  const python = "/usr/bin/python3";
  const probe = await new Deno.Command(python, { args: ["-c", "import distributed, psutil"], stderr: "null" })
    .output().catch(() => null);
  if (!probe?.success) return null;
  const child = new Deno.Command(python, {
    args: [join(ROOT, "bench", "fanout_dask.py"), program],
    stdin: "piped",
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffered = "";
  const nextLine = async (): Promise<Record<string, number>> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) throw new Error("Dask's process ended");
      buffered += value;
    }
    const at = buffered.indexOf("\n");
    const line = buffered.slice(0, at);
    buffered = buffered.slice(at + 1);
    return JSON.parse(line);
  };
  const writer = child.stdin.getWriter();
  await nextLine(); // {"ready": true}
  return {
    async run(instances: number): Promise<Run> {
      await writer.write(new TextEncoder().encode(`${instances}\n`));
      const { wall, cpu } = await nextLine();
      return { wall, cpu };
    },
    async [Symbol.asyncDispose]() {
      await writer.close().catch(() => {});
      await child.status;
    },
  };
}

/** A package of `instances` instances whose entrypoint is `entrypoint` (both files are in every package). */
async function fanoutPackage(dir: string, entrypoint: Entrypoint, instances: number): Promise<Uint8Array> {
  const root = await Deno.makeTempDir({ dir, prefix: "pkg-" });
  await Deno.copyFile("/usr/bin/true", join(root, ENTRYPOINTS.binary));
  await Deno.writeTextFile(join(root, ENTRYPOINTS.script), SCRIPT, { mode: 0o755 });
  await Deno.writeTextFile(
    join(root, "task.toml"),
    `[task]\nentrypoint = "${ENTRYPOINTS[entrypoint]}"\ninstances = ${instances}\n`,
  );
  return await zipFolder(root);
}

const listArg = <T extends string>(value: unknown, all: readonly T[], name: string): T[] => {
  if (value === undefined) return [...all];
  const picked = String(value).split(",").map((s) => s.trim());
  const bad = picked.find((s) => !all.includes(s as T));
  if (bad) throw new Error(`Flag '--${name}' takes ${all.join(", ")}: got '${bad}'`);
  return picked as T[];
};

/** The fan-out benchmark. */
export const fanout: Benchmark = {
  name: "fanout",
  summary: "6,000 instances of `true` (a binary, a shell script) on 2 slots vs xargs -P2, GNU parallel, Dask",
  flags: {
    instances: "string",
    rounds: "string",
    setups: "string",
    entrypoints: "string",
    "gnu-parallel": "boolean",
    dask: "boolean",
    "node-dir": "string",
    "nats-servers": "string",
  },
  tiny: ["--instances", "20", "--rounds", "1", "--no-dask"],
  async run(ctx) {
    const instances = intArg(ctx.args, "instances", 6_000);
    const rounds = Math.max(1, intArg(ctx.args, "rounds", 3));
    const setups = listArg(ctx.args.flags.setups, Object.keys(SETUPS) as Setup[], "setups");
    const entrypoints = listArg(ctx.args.flags.entrypoints, Object.keys(ENTRYPOINTS) as Entrypoint[], "entrypoints");
    // Where the nodes copy task roots: say /dev/shm (tmpfs) to see what the file system costs.
    const nodeDir = ctx.args.flags["node-dir"] as string | undefined;
    const workDir = nodeDir ? await Deno.makeTempDir({ dir: nodeDir, prefix: "parallelic-bench-" }) : undefined;
    await using _removed = {
      [Symbol.asyncDispose]: async () => void (workDir && await Deno.remove(workDir, { recursive: true })),
    };
    const natsServers = Math.max(1, intArg(ctx.args, "nats-servers", 1));
    const clusters = new Map<Setup, BenchCluster>();
    await using _clusters = {
      [Symbol.asyncDispose]: async () => void await Promise.all([...clusters.values()].map((c) => c.stop())),
    };
    for (const setup of setups) {
      const cluster = await startCluster(ctx, { natsServers, localSlots: setup === "local" ? 2 : undefined });
      clusters.set(setup, cluster);
      if (setup === "nodes") await cluster.addNodes(2, { slots: 1, workDir });
    }
    const zips = new Map<Entrypoint, Uint8Array>();
    for (const e of entrypoints) zips.set(e, await fanoutPackage(ctx.dir, e, instances));
    // The other tools run the same files, from a folder of their own.
    const peerDir = await Deno.makeTempDir({ dir: ctx.dir, prefix: "peers-" });
    await Deno.copyFile("/usr/bin/true", join(peerDir, ENTRYPOINTS.binary));
    await Deno.writeTextFile(join(peerDir, ENTRYPOINTS.script), SCRIPT, { mode: 0o755 });
    const xargsCommand: Record<Entrypoint, string> = {
      binary: `seq ${instances} | xargs -P2 -n1 ./${ENTRYPOINTS.binary}`,
      script: `seq ${instances} | xargs -P2 -n1 sh ${ENTRYPOINTS.script}`,
    };
    const withParallel = ctx.args.flags["gnu-parallel"] !== false && await hasCommand("parallel");
    await using dask = ctx.args.flags.dask === false ? null : await startDask(join(peerDir, ENTRYPOINTS.binary));

    // runs[key][round]: key is `${setup}/${entrypoint}` for Parallelic, `xargs/${entrypoint}`, "parallel", "dask".
    const runs = new Map<string, Run[]>();
    const add = (key: string, run: Run) => runs.set(key, [...runs.get(key) ?? [], run]);
    for (let round = 0; round < rounds; round++) {
      for (const entrypoint of entrypoints) {
        // Alternating: xargs between the set-ups, the set-ups' order turned each round.
        const order = round % 2 ? [...setups].reverse() : setups;
        for (const [i, setup] of order.entries()) {
          if (i === 1) add(`xargs/${entrypoint}`, await sh(xargsCommand[entrypoint], peerDir));
          const cluster = clusters.get(setup)!;
          const cpu0 = await clusterCpu(cluster);
          const t0 = performance.now();
          const { id } = await cluster.submit(zips.get(entrypoint)!);
          const done = await cluster.done(id);
          const wall = (performance.now() - t0) / 1000;
          if (done.state !== "succeeded") throw new Error(`task ${done.state}: ${JSON.stringify(done.counts)}`);
          const cpu1 = await clusterCpu(cluster);
          const parts = Object.fromEntries(
            Object.keys(cpu1).map((k) => [k, cpu1[k as keyof Cpu] - cpu0[k as keyof Cpu]]),
          ) as Cpu;
          add(`${setup}/${entrypoint}`, { wall, cpu: sum(parts), parts });
        }
        if (setups.length < 2) add(`xargs/${entrypoint}`, await sh(xargsCommand[entrypoint], peerDir));
      }
      if (withParallel) add("parallel", await sh(`seq ${instances} | parallel -j2 ./${ENTRYPOINTS.binary}`, peerDir));
      if (dask) add("dask", await dask.run(instances));
    }

    const medianOf = (xs: number[]) => percentile(xs, 50);
    /** The median over the rounds of a / b (or b / a). */
    const ratio = (a: string, b: string) => {
      const ra = runs.get(a), rb = runs.get(b);
      return ra && rb ? medianOf(ra.map((r, i) => r.wall / rb[i].wall)) : NaN;
    };
    const firstBinary = entrypoints.includes("binary") ? setups.map((s) => `${s}/binary`) : [];
    const rows: Array<Record<string, unknown>> = [];
    const cells: string[][] = [];
    const row = (key: string, setup: string, entrypoint: string, tool: string, vs: number) => {
      const rs = runs.get(key)!;
      const wall = medianOf(rs.map((r) => r.wall));
      const cpu = medianOf(rs.map((r) => r.cpu));
      const parts = rs[0].parts
        ? Object.fromEntries(
          Object.keys(rs[0].parts).map((k) => [k, medianOf(rs.map((r) => r.parts![k as keyof Cpu])) / instances * 1e6]),
        )
        : undefined;
      rows.push({
        instances,
        rounds,
        setup,
        entrypoint,
        tool,
        wallS: wall,
        wallMinS: Math.min(...rs.map((r) => r.wall)),
        wallMaxS: Math.max(...rs.map((r) => r.wall)),
        msPerInstance: wall / instances * 1000,
        cpuMsPerInstance: cpu / instances * 1000,
        vsXargs: vs,
        ...parts ? { cpuUsPerInstance: parts } : {},
      });
      cells.push([
        setup,
        entrypoint,
        tool,
        fmt(wall, 3),
        rs.length > 1
          ? `${fmt(Math.min(...rs.map((r) => r.wall)), 2)} - ${fmt(Math.max(...rs.map((r) => r.wall)), 2)}`
          : "",
        fmt(wall / instances * 1000, 3),
        fmt(cpu / instances * 1000, 3),
        parts ? Object.values(parts).map((v) => fmt(v)).join(" / ") : "",
        fmt(vs, 2),
      ]);
    };
    const verdicts: string[] = [];
    for (const entrypoint of entrypoints) {
      for (const setup of setups) {
        const r = ratio(`${setup}/${entrypoint}`, `xargs/${entrypoint}`);
        row(`${setup}/${entrypoint}`, SETUPS[setup], entrypoint, "parallelic", r);
        verdicts.push(`${setup} ${entrypoint} ${fmt(r, 2)}x`);
      }
      row(`xargs/${entrypoint}`, "-", entrypoint, `xargs -P2 -n1 ${xargsCommand[entrypoint].split("-n1 ")[1]}`, 1);
    }
    const slower = (peer: string) =>
      firstBinary.map((k) => `${fmt(ratio(peer, k), 2)}x (${k.split("/")[0]})`).join(", ");
    if (runs.has("parallel")) {
      row("parallel", "-", "binary", "GNU parallel -j2", ratio("parallel", "xargs/binary"));
    }
    if (runs.has("dask")) {
      row("dask", "-", "binary", "Dask LocalCluster, 2 workers x 1 thread", ratio("dask", "xargs/binary"));
    }
    const worst = Math.max(...entrypoints.flatMap((e) => setups.map((s) => ratio(`${s}/${e}`, `xargs/${e}`))));
    const nats = natsServers > 1 ? ` (on ${natsServers} NATS servers, R${natsServers})` : "";
    const text = [
      `Fan-out${nats}: ${fmt(instances)} instances, ${rounds} alternating rounds (medians of the rounds' ratios). ` +
      `Parallelic against xargs running the same: ${verdicts.join(", ")} (target <= 1.1x: ${
        worst <= 1.1 ? "met" : "missed"
      }).` +
      (runs.has("parallel")
        ? ` GNU parallel slower than Parallelic: ${slower("parallel")} (target >= 6x).`
        : " GNU parallel was not run (--no-gnu-parallel, or not installed: apt-get install parallel).") +
      (runs.has("dask")
        ? ` Dask slower than Parallelic: ${slower("dask")} (target >= 4x).`
        : " Dask was not run (--no-dask, or /usr/bin/python3 lacks it: apt-get install python3-distributed)."),
      "",
      table([
        "set-up",
        "entrypoint",
        "tool",
        "wall s (median)",
        "range",
        "ms/instance",
        "CPU ms/instance",
        "CPU µs/instance: manager / nats / nodes / instances",
        "vs xargs",
      ], cells),
      "",
      "CPU ms/instance counts every process a tool used; the load of others changes it far less than wall times.",
    ].join("\n");
    return {
      command:
        `--instances ${instances} --rounds ${rounds} --setups ${setups.join(",")} --entrypoints ${
          entrypoints.join(",")
        }${withParallel ? "" : " --no-gnu-parallel"}${dask ? "" : " --no-dask"}` +
        (nodeDir ? ` --node-dir ${nodeDir}` : "") + (natsServers > 1 ? ` --nats-servers ${natsServers}` : ""),
      text: nodeDir ? `${text}\n\nThe nodes' work dirs were under ${nodeDir}.` : text,
      rows,
    };
  },
};

if (import.meta.main) await runBenchmark(fanout, Deno.args);
