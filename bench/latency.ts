/**
 * Latency benchmark: one instance of `true` on an idle cluster (a manager
 * and one node of one slot), submit → running → done, over 200 runs; beside
 * the floor measured in the same run: one NATS request/reply plus one spawn
 * of the same `true` with piped output, as the node spawns it.
 *
 * "Done" is the task's `parallelic.task.<id>.done` event, received on NATS;
 * the steps between come from the instance's `startedAt` and `endedAt`
 * (node clock, whole ms, so each step is ±1 ms).
 *
 *   deno run -A bench/latency.ts [--runs 200] [--no-record]
 *
 * Target (BENCHMARKS.md): p50 within 5 ms of the floor.
 *
 * @module
 */
import { connect } from "@nats-io/transport-node";
import { join } from "node:path";
import { createLogger } from "../core/log.ts";
import type { InstanceView } from "../core/schema.ts";
import { type Benchmark, epochMs, fmt, intArg, percentile, runBenchmark, sleep, table } from "./_util.ts";
import { startCluster, truePackage } from "./cluster.ts";

/**
 * Times one NATS request/reply and one spawn of `bin` (piped output, read to the end), `runs` times; with `before`,
 * that first in each run too (`bench/user_latency.ts`: an HTTP POST), timed as `before`; `gapMs` idle between runs.
 */
export async function measureFloor(
  natsUrl: string,
  bin: string,
  runs: number,
  before?: () => Promise<void>,
  gapMs = 0,
) {
  const server = await connect({ servers: natsUrl });
  const client = await connect({ servers: natsUrl });
  server.subscribe("bench.floor", { callback: (_e, m) => void m.respond(m.data) });
  await server.flush();
  const payload = new TextEncoder().encode("{}");
  const nats: number[] = [];
  const spawn: number[] = [];
  const total: number[] = [];
  const first: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const tb = performance.now();
      await before?.();
      const t0 = performance.now();
      await client.request("bench.floor", payload, { timeout: 5000 });
      const t1 = performance.now();
      const child = new Deno.Command(bin, { stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
      await Promise.all([
        child.status,
        child.stdout.pipeTo(new WritableStream()),
        child.stderr.pipeTo(new WritableStream()),
      ]);
      const t2 = performance.now();
      nats.push(t1 - t0);
      spawn.push(t2 - t1);
      total.push(t2 - tb);
      first.push(t0 - tb);
      if (gapMs > 0) await sleep(gapMs);
    }
  } finally {
    await client.close();
    await server.close();
  }
  return { before: first, nats, spawn, total };
}

/**
 * Each step's p50 time after its run's `client.submit`, in order, up to
 * `end`, from step lines (`<epoch ms> <pid> <step>`, see Logger.step). A
 * step seen twice in a run (two commits) is numbered.
 */
export function stepTimes(text: string, end = "client.done"): Array<{ step: string; p50: number }> {
  const lines = text.trim().split("\n").map((l) => l.split(" ")).map(([t, _pid, step]) => ({ t: Number(t), step }))
    .sort((a, b) => a.t - b.t);
  const at = new Map<string, number[]>();
  let start: number | null = null;
  let seen = new Map<string, number>();
  for (const { t, step } of lines) {
    if (step === "client.submit") {
      start = t;
      seen = new Map();
    }
    if (start === null) continue;
    const n = (seen.get(step) ?? 0) + 1;
    seen.set(step, n);
    const name = n === 1 ? step : `${step} #${n}`;
    const list = at.get(name);
    if (list) list.push(t - start);
    else at.set(name, [t - start]);
  }
  const done = percentile(at.get(end) ?? [Infinity], 50);
  return [...at].map(([step, v]) => ({ step, p50: percentile(v, 50) }))
    .filter((r) => r.p50 <= done).sort((a, b) => a.p50 - b.p50);
}

/** {@linkcode stepTimes} as a table, with the time since the step before. */
export function stepTable(text: string, end = "client.done"): string {
  const rows = stepTimes(text, end);
  return table(
    ["step", "p50 ms after submit", "ms since the step before"],
    rows.map((r, i) => [r.step, fmt(r.p50, 3), fmt(r.p50 - (rows[i - 1]?.p50 ?? 0), 3)]),
  );
}

/** The latency benchmark. */
export const latency: Benchmark = {
  name: "latency",
  summary: "one instance of `true` on an idle cluster: submit → running → done, p50/p99 over 200 runs",
  flags: { runs: "string", trace: "boolean" },
  // Traced, so that the smoke run also proves every step is still noted where it happens.
  tiny: ["--runs", "5", "--trace"],
  async run(ctx) {
    const runs = intArg(ctx.args, "runs", 200);
    // --trace: every process notes the steps of each run in one file (see Logger.step); tracing costs
    // a few hundredths of a millisecond per step, so traced runs are a little slower.
    const traceFile = ctx.args.flags.trace === true ? join(ctx.dir, "steps.log") : undefined;
    const client = createLogger({ level: "error", traceFile });
    await using cluster = await startCluster(ctx, { env: traceFile ? { PARALLELIC_TRACE: traceFile } : undefined });
    await cluster.addNodes(1, { slots: 1 });
    const zip = await truePackage(ctx.dir, 1);
    // One run first, so that the node has the package cached (a fresh package is a different benchmark).
    await cluster.done((await cluster.submit(zip)).id);

    const accepted: number[] = [];
    const toStart: number[] = [];
    const ran: number[] = [];
    const toDone: number[] = [];
    const done: number[] = [];
    for (let i = 0; i < runs; i++) {
      client.step("client.submit");
      const t0 = epochMs();
      const { id } = await cluster.submit(zip);
      client.step("client.answered");
      const t1 = epochMs();
      const event = await cluster.done(id, 30_000);
      client.step("client.done");
      const t2 = epochMs();
      if (event.state !== "succeeded") throw new Error(`Task ${id} ended ${event.state}`);
      const inst = await cluster.json<InstanceView>(`/api/v1/tasks/${id}/instances/0`);
      accepted.push(t1 - t0);
      done.push(t2 - t0);
      if (inst.startedAt === null || inst.endedAt === null) throw new Error(`Instance 0 of ${id} has no times`);
      toStart.push(inst.startedAt - t0);
      ran.push(inst.endedAt - inst.startedAt);
      toDone.push(t2 - inst.endedAt);
    }
    const bin = join(ctx.dir, "true");
    await Deno.copyFile("/usr/bin/true", bin);
    const f = await measureFloor(cluster.natsUrl, bin, runs);

    const row = (what: string, v: number[]) => [what, fmt(percentile(v, 50), 2), fmt(percentile(v, 99), 2)];
    const p50 = percentile(done, 50);
    const floor50 = percentile(f.total, 50);
    const steps = traceFile ? stepTable(await Deno.readTextFile(traceFile)) : null;
    return {
      command: `--runs ${runs}${traceFile ? " --trace" : ""}`,
      text: [
        `Latency: one instance of \`true\`, ${runs} runs: submit → done p50 **${fmt(p50, 2)} ms**, ` +
        `p99 ${fmt(percentile(done, 99), 2)} ms; floor (NATS request/reply + spawn) p50 ${fmt(floor50, 2)} ms: ` +
        `${fmt(p50 - floor50, 2)} ms above it (target <= 5 ms: ${p50 - floor50 <= 5 ? "met" : "missed"}).`,
        "",
        table(["step", "p50 ms", "p99 ms"], [
          row("submit → answered (upload, package check, task stored)", accepted),
          row("submit → instance started on the node (task stored with its placement, sent)", toStart),
          row("started → ended (copy of the task root, spawn, exit, output closed)", ran),
          row("ended → done event received (result sent, stored, task finished)", toDone),
          row("**submit → done event received**", done),
          row("floor: NATS request/reply", f.nats),
          row("floor: spawn `true`, piped output read to the end", f.spawn),
          row("floor: both", f.total),
        ]),
        ...steps
          ? ["", "Where a run's time goes (steps noted by manager, node and client; p50 over the runs):", "", steps]
          : [],
      ].join("\n"),
    };
  },
};

if (import.meta.main) await runBenchmark(latency, Deno.args);
