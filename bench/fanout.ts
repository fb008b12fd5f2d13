/**
 * Fan-out benchmark: a manager (embedded NATS, no local node) and two node
 * processes of one slot each run N instances of `true`; in the same run,
 * `seq N | xargs -P2 -n1 true` and `parallel -j2 true` on the same machine.
 *
 *   deno run -A bench/fanout.ts [--instances 10000] [--no-record]
 *
 * Targets (issues 3 and 7): Parallelic within 1.5x of xargs, and at least 4x
 * faster than GNU parallel.
 *
 * @module
 */
import { type Benchmark, fmt, intArg, runBenchmark, table, time } from "./_util.ts";
import { startCluster, truePackage } from "./cluster.ts";

async function sh(command: string): Promise<void> {
  const out = await new Deno.Command("bash", { args: ["-c", command], stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`'${command}' failed: ${new TextDecoder().decode(out.stderr)}`);
}

const hasCommand = async (name: string) =>
  (await new Deno.Command("bash", { args: ["-c", `command -v ${name}`], stdout: "null" }).output()).success;

/** The fan-out benchmark. */
export const fanout: Benchmark = {
  name: "fanout",
  summary: "10,000 instances of `true` on 2 nodes x 1 slot vs xargs -P2 and GNU parallel -j2",
  flags: { instances: "string" },
  tiny: ["--instances", "20"],
  async run(ctx) {
    const instances = intArg(ctx.args, "instances", 10_000);
    await using cluster = await startCluster(ctx);
    await cluster.addNodes(2, { slots: 1 });
    // The package holds a copy of `true`, and the other tools run that same binary.
    const zip = await truePackage(ctx.dir, instances);
    const cpu0 = (await cluster.managerStats()).cpuSeconds;
    const parallelic = await time(async () => {
      const { id } = await cluster.submit(zip);
      const done = await cluster.done(id);
      if (done.state !== "succeeded") throw new Error(`task ${done.state}: ${JSON.stringify(done.counts)}`);
    });
    const managerCpu = (await cluster.managerStats()).cpuSeconds - cpu0;
    const xargs = await time(() => sh(`seq ${instances} | xargs -P2 -n1 /usr/bin/true`));
    const gnuParallel = await hasCommand("parallel")
      ? await time(() => sh(`seq ${instances} | parallel -j2 /usr/bin/true`))
      : NaN;

    const row = (tool: string, s: number) => [tool, fmt(s, 3), fmt(s / instances * 1000, 3), fmt(s / xargs, 2)];
    const text = [
      `Fan-out: ${fmt(instances)} instances of \`true\`; Parallelic ${fmt(parallelic / xargs, 2)}x xargs ` +
      `(target <= 1.5x: ${parallelic / xargs <= 1.5 ? "met" : "missed"}), GNU parallel ` +
      (Number.isNaN(gnuParallel)
        ? "not installed (apt-get install parallel)."
        : `${fmt(gnuParallel / parallelic, 2)}x Parallelic (target >= 4x: ${
          gnuParallel / parallelic >= 4 ? "met" : "missed"
        }).`),
      "",
      table(["tool", "wall s", "ms/instance", "vs xargs"], [
        row("parallelic (2 nodes x 1 slot)", parallelic),
        row("xargs -P2", xargs),
        row("GNU parallel -j2", gnuParallel),
      ]),
      "",
      `The manager used ${fmt(managerCpu, 2)} s of CPU during Parallelic's run ` +
      `(${fmt(managerCpu / instances * 1e6)} µs per instance).`,
    ].join("\n");
    return { command: `--instances ${instances}`, text };
  },
};

/** Runs the fan-out benchmark with `--instances N` (for the suite and other callers). */
export const runFanout = (instances: number, record = true) =>
  runBenchmark(fanout, ["--instances", String(instances), ...record ? [] : ["--no-record"]]);

if (import.meta.main) await runBenchmark(fanout, Deno.args);
