/**
 * The benchmark suite: runs every benchmark in turn; each prints
 * its table and appends it to bench/results/runs.md with the date, the machine, the
 * load and the command that reproduces it.
 *
 *   deno task bench [--only fanout,latency] [--tiny] [--no-record] [--profile DIR] [--wait-quiet 1.0]
 *
 * `--tiny` runs each with tiny sizes (the smoke run of the test suite);
 * `--profile DIR` writes `--cpu-prof` profiles of the manager and nodes to
 * DIR/NAME/ (sum them with `deno run -A bench/profile.ts DIR/NAME/manager`);
 * `--wait-quiet L` waits (up to 2 minutes) for the load average to fall
 * below L before each benchmark.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "../cli/args.ts";
import { TaskSpec } from "../core/schema.ts";
import { backlog } from "./backlog.ts";
import { bigPackage } from "./big_package.ts";
import { chunks } from "./chunks.ts";
import { dispatch } from "./dispatch.ts";
import { fanout } from "./fanout.ts";
import { latency } from "./latency.ts";
import { userLatency } from "./user_latency.ts";
import { manyNodes } from "./many_nodes.ts";
import { type Benchmark, ROOT, runBenchmark } from "./_util.ts";

/** Why the data-path benchmark cannot run in this build, or null when it can. */
export async function dataPathUnavailable(): Promise<string | null> {
  if (!("data" in TaskSpec.shape)) return "data sets ([data] in task.toml) are not part of this build yet";
  const here = await Deno.stat(join(ROOT, "bench", "data_path.ts")).then(() => true, () => false);
  return here ? null : "bench/data_path.ts, which comes with data sets, is missing";
}

/**
 * Data path: `bench/data_path.ts` comes with data sets and records itself (`--record`); the suite runs it as it is, or
 * says why it cannot.
 */
export const dataPath: Benchmark = {
  name: "data_path",
  summary: "a data set to a node: MB/s against the plain object store, peak memory of manager and node",
  flags: { "size-mib": "string" },
  tiny: ["--size-mib", "8"],
  async run(ctx) {
    const why = await dataPathUnavailable();
    if (why) {
      console.log(`data_path: skipped: ${why}.`);
      return null;
    }
    const size = ctx.args.flags["size-mib"] as string | undefined;
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        join(ROOT, "bench", "data_path.ts"),
        ...size ? ["--size-mib", size] : [],
        ...ctx.args.flags.record !== false ? ["--record"] : [],
      ],
      cwd: ROOT,
      stdout: "inherit",
      stderr: "inherit",
    }).output();
    if (!out.success) throw new Error(`bench/data_path.ts failed with exit code ${out.code}`);
    return null;
  },
};

/** Every benchmark, in the order the suite runs them. */
export const BENCHMARKS: Benchmark[] = [
  fanout,
  latency,
  userLatency,
  dispatch,
  backlog,
  manyNodes,
  dataPath,
  bigPackage,
  chunks,
];

if (import.meta.main) {
  const args = parseArgs(Deno.args, {
    only: "string",
    tiny: "boolean",
    record: "boolean",
    profile: "string",
    "wait-quiet": "string",
    help: "boolean",
  });
  if (args.flags.help) {
    console.log("deno task bench [--only NAME,...] [--tiny] [--no-record] [--profile DIR] [--wait-quiet LOAD]\n");
    for (const b of BENCHMARKS) console.log(`  ${b.name.padEnd(11)} ${b.summary}`);
    Deno.exit(0);
  }
  const only = (args.flags.only as string | undefined)?.split(",");
  const unknown = only?.filter((n) => !BENCHMARKS.some((b) => b.name === n));
  if (unknown?.length) {
    console.error(`Unknown benchmark '${unknown[0]}': known are ${BENCHMARKS.map((b) => b.name).join(", ")}`);
    Deno.exit(2);
  }
  const failed: string[] = [];
  for (const bench of BENCHMARKS.filter((b) => !only || only.includes(b.name))) {
    console.log(`\n=== ${bench.name}: ${bench.summary}`);
    const argv = [
      ...args.flags.tiny ? bench.tiny : [],
      ...args.flags.record === false ? ["--no-record"] : [],
      ...args.flags.profile ? ["--profile", join(args.flags.profile as string, bench.name)] : [],
      ...args.flags["wait-quiet"] ? ["--wait-quiet", args.flags["wait-quiet"] as string] : [],
    ];
    try {
      await runBenchmark(bench, argv);
    } catch (e) {
      console.error(`${bench.name} failed: ${(e as Error).stack ?? e}`);
      failed.push(bench.name);
    }
  }
  if (failed.length) {
    console.error(`\nFailed: ${failed.join(", ")}`);
    Deno.exit(1);
  }
}
