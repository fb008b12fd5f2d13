/**
 * Big-package memory benchmark: a task folder holding one large file of
 * random bytes (1 GiB by default) is submitted with `parallelic submit`
 * (zipped into a temporary file, uploaded from it), checked and stored by
 * the manager, fetched and unpacked by one node, and run. It reports the
 * peak resident memory (VmHWM in /proc/PID/status) of the CLI, the manager
 * and the node, each its own process started from this checkout (target:
 * under 300 MiB each), and the time of each step. The CLI's peak is sampled
 * every 50 ms while it runs (VmHWM only grows, so the last sample is at most
 * 50 ms short of its end).
 *
 *   deno run -A bench/big_package.ts [--size-mib 1024] [--no-record]
 *
 * Recording appends the table to BENCHMARKS.md and the raw figures, one
 * JSON object a line, to bench/results/big_package.jsonl.
 *
 * @module
 */
import { join } from "node:path";
import { Client } from "../cli/client.ts";
import { startNatsServer } from "../core/nats_server.ts";
import type { TaskView } from "../core/schema.ts";
import { type Benchmark, commit, fmt, intArg, machine, mib, ROOT, runBenchmark, table } from "./_util.ts";
import { peakRss, spawn, writeFile } from "./data_path.ts";

const TOKEN = "bench-big-package-token";
const MiB = 2 ** 20;
/** The target for each process's peak resident memory. */
const TARGET_BYTES = 300 * MiB;

/** What one run measured. */
export interface BigPackageResult {
  fileBytes: number;
  packageBytes: number;
  /** Seconds: the CLI's whole run (list, zip, upload, the manager's check and store). */
  submitSeconds: number;
  /** Seconds from the submit's answer to the task's success (the node's fetch, unpack, copy, run). */
  runSeconds: number;
  cliPeakBytes: number;
  managerPeakBytes: number;
  nodePeakBytes: number;
}

/** Runs `main.ts args` to its end, sampling its peak resident memory; returns it with the output. */
async function runSampled(args: string[], env: Record<string, string>) {
  const run = spawn(args, env);
  let peak = 0;
  let done = false;
  const sampler = (async () => {
    while (!done) {
      peak = Math.max(peak, await peakRss(run.child.pid).catch(() => 0));
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const status = await run.child.status;
  done = true;
  await sampler;
  return { code: status.code, output: run.output(), waitFor: run.waitFor, peakBytes: peak };
}

/** Runs the benchmark once in `dir`. */
export async function runBigPackage(dir: string, fileBytes: number): Promise<BigPackageResult> {
  const stops: Array<() => Promise<void>> = [];
  try {
    const folder = join(dir, "big-task");
    await Deno.mkdir(folder);
    await Deno.writeTextFile(join(folder, "task.toml"), `[task]\nentrypoint = "run.sh"\n`);
    await Deno.writeTextFile(
      join(folder, "run.sh"),
      `#!/bin/sh\ntest "$(wc -c < big.bin)" = ${fileBytes}\n`,
      { mode: 0o755 },
    );
    await writeFile(join(folder, "big.bin"), fileBytes);

    const nats = await startNatsServer({ storeDir: join(dir, "nats"), port: 0 });
    stops.push(() => nats.stop());
    // The package is a little larger than its file: the limit leaves room for that.
    const limit = fileBytes + 64 * MiB;
    const manager = spawn(
      [
        "manager",
        `--data-dir=${join(dir, "manager")}`,
        "--port=0",
        `--nats=${nats.url}`,
        "--no-local-node",
        `--max-package-size=${Math.max(limit, 2 ** 30)}`,
      ],
      { PARALLELIC_TOKEN: TOKEN },
    );
    stops.push(manager.stop);
    const url = (await manager.waitFor(/gateway:\s+(http:\/\/\S+)/, "the manager"))[1];
    const node = spawn(["node", `--nats=${nats.url}`, "--name=bench-big", `--work-dir=${join(dir, "node")}`]);
    stops.push(node.stop);
    await node.waitFor(/node:registered/, "the node");

    let t0 = performance.now();
    const cli = await runSampled(["submit", folder, "--no-wait"], {
      PARALLELIC_MANAGER: url,
      PARALLELIC_TOKEN: TOKEN,
    });
    const submitSeconds = (performance.now() - t0) / 1000;
    const id = cli.code === 0 ? (await cli.waitFor(/Submitted task (t[0-9a-z]+)/, "the task id"))[1] : undefined;
    if (cli.code !== 0 || !id) throw new Error(`parallelic submit failed (${cli.code}):\n${cli.output.slice(-2000)}`);
    t0 = performance.now();
    const client = new Client({ manager: url, token: TOKEN });
    let task: TaskView;
    for (;;) {
      task = await client.json<TaskView>(`/api/v1/tasks/${id}`);
      if (task.state === "succeeded") break;
      if (task.state !== "running" && task.state !== "queued") {
        const { instances } = await client.json<{ instances: unknown[] }>(`/api/v1/tasks/${id}/instances?limit=1`);
        throw new Error(
          `The task ${task.state}: ${JSON.stringify(instances[0])}; node output:\n${node.output().slice(-2000)}`,
        );
      }
      await new Promise((r) => setTimeout(r, 200));
    }
    const runSeconds = (performance.now() - t0) / 1000;
    return {
      fileBytes,
      packageBytes: task.packageBytes,
      submitSeconds,
      runSeconds,
      cliPeakBytes: cli.peakBytes,
      managerPeakBytes: await peakRss(manager.child.pid),
      nodePeakBytes: await peakRss(node.child.pid),
    };
  } finally {
    for (const stop of stops.reverse()) await stop().catch(() => {});
  }
}

/** The benchmark, for the suite (`bench/mod.ts`) and alone. */
export const bigPackage: Benchmark = {
  name: "big_package",
  summary: "a large package submitted, stored, fetched and run: peak memory of CLI, manager and node",
  flags: { "size-mib": "string" },
  tiny: ["--size-mib", "8"],
  async run(ctx) {
    const sizeMib = intArg(ctx.args, "size-mib", 1024);
    const r = await runBigPackage(ctx.dir, sizeMib * MiB);
    if (ctx.args.flags.record !== false) {
      const line = { at: new Date().toISOString(), machine: await machine(), code: await commit(), ...r };
      await Deno.mkdir(join(ROOT, "bench", "results"), { recursive: true });
      await Deno.writeTextFile(join(ROOT, "bench", "results", "big_package.jsonl"), `${JSON.stringify(line)}\n`, {
        append: true,
      });
    }
    const verdict = (b: number) => `${mib(b)} (${b < TARGET_BYTES ? "met" : "missed"})`;
    const met = Math.max(r.cliPeakBytes, r.managerPeakBytes, r.nodePeakBytes) < TARGET_BYTES;
    return {
      command: `--size-mib ${sizeMib}`,
      text: [
        `Big package: one task folder with a ${mib(r.fileBytes)} file of random bytes (a ${
          mib(r.packageBytes)
        } package) submitted with parallelic submit, stored, fetched by one node and run. Peak resident memory ` +
        `of each process under ${mib(TARGET_BYTES)}: ${met ? "met" : "missed"}.`,
        "",
        table(
          ["CLI peak RSS", "manager peak RSS", "node peak RSS", "submit s (zip, upload, check, store)", "run s"],
          [[
            verdict(r.cliPeakBytes),
            verdict(r.managerPeakBytes),
            verdict(r.nodePeakBytes),
            fmt(r.submitSeconds, 1),
            fmt(r.runSeconds, 1),
          ]],
        ),
      ].join("\n"),
    };
  },
};

if (import.meta.main) await runBenchmark(bigPackage, Deno.args);
