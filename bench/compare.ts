/**
 * The user path (`bench/user_latency.ts`: a `POST /api/v1/tasks` of one
 * instance of `true` until its terminal event on `/api/v1/events`) of two
 * checkouts side by side: a manager and a node of one slot started from
 * each, runs alternating between them (so that both meet the same load on
 * a shared machine), traced. Prints each side's p50, the CPU time of its
 * manager and node per run, and where the time goes step by step.
 *
 *   deno run -A bench/compare.ts --before DIR [--after DIR] [--runs 200] [--raw] [--gap-ms 0]
 *
 * `--before` and `--after` are checkouts of the repository (`git worktree
 * add DIR COMMIT`); `--after` defaults to this one. `--raw` sends the
 * package as `application/zip` instead of a multipart form; `--gap-ms`
 * leaves both clusters idle between runs.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "../cli/args.ts";
import { createLogger } from "../core/log.ts";
import { type BenchContext, epochMs, fmt, percentile, procStats, ROOT, sleep, table } from "./_util.ts";
import { stepTimes } from "./latency.ts";
import { form, openEvents } from "./user_latency.ts";

type ClusterModule = typeof import("./cluster.ts");

/** One side: its cluster, started from `tree`, and how to time a run on it. */
async function startSide(tree: string, dir: string, zip: Uint8Array, raw: boolean) {
  const { startCluster } = await import(join(tree, "bench", "cluster.ts")) as ClusterModule;
  const traceFile = join(dir, "steps.log");
  const client = createLogger({ level: "error", traceFile });
  const ctx: BenchContext = { args: { _: [], flags: {} }, dir };
  const cluster = await startCluster(ctx, { env: { PARALLELIC_TRACE: traceFile } });
  const [node] = await cluster.addNodes(1, { slots: 1 });
  const events = await openEvents(cluster, client);
  const once = async () => {
    client.step("client.submit");
    const t0 = epochMs();
    const res = await cluster.api("/api/v1/tasks?name=true", {
      method: "POST",
      ...raw
        ? { headers: { "content-type": "application/zip" }, body: zip as Uint8Array<ArrayBuffer> }
        : { body: form(zip) },
    });
    if (res.status !== 201) throw new Error(`POST /api/v1/tasks answered ${res.status}: ${await res.text()}`);
    const { id } = await res.json() as { id: string };
    client.step("client.answered");
    return await events.ended(id) - t0;
  };
  const cpuSeconds = async () =>
    (await procStats(cluster.pid)).cpuSeconds + (await procStats(node.child.pid)).cpuSeconds;
  return {
    once,
    traceFile,
    cpuSeconds,
    async stop() {
      await events.close();
      await cluster.stop();
    },
  };
}

if (import.meta.main) {
  const args = parseArgs(Deno.args, {
    before: "string",
    after: "string",
    runs: "string",
    raw: "boolean",
    "gap-ms": "string",
  });
  const before = args.flags.before as string | undefined;
  if (!before) {
    console.error("usage: deno run -A bench/compare.ts --before DIR [--after DIR] [--runs 200] [--raw] [--gap-ms 0]");
    Deno.exit(2);
  }
  const after = (args.flags.after as string | undefined) ?? ROOT;
  const runs = Number(args.flags.runs ?? 200);
  const gapMs = Number(args.flags["gap-ms"] ?? 0);
  const raw = args.flags.raw === true;
  const dir = await Deno.makeTempDir({ prefix: "parallelic-compare-" });
  // Stopped in the end whatever failed: a side left running would weigh on every later measurement.
  const started: Array<{ stop(): Promise<void> }> = [];
  const start = async (name: string, checkout: string) => {
    const side = {
      name,
      ...await startSide(checkout, await Deno.makeTempDir({ dir }), zip, raw),
      times: [] as number[],
    };
    started.push(side);
    return side;
  };
  let zip: Uint8Array;
  try {
    const { truePackage } = await import("./cluster.ts");
    zip = await truePackage(dir, 1);
    const sides = [await start("before", before), await start("after", after)];
    // The node caches the package at its first run; a few runs more warm both sides up.
    for (const side of sides) for (let i = 0; i < 5; i++) await side.once();
    for (const side of sides) await Deno.truncate(side.traceFile);
    const cpu0 = await Promise.all(sides.map((s) => s.cpuSeconds()));
    for (let i = 0; i < runs; i++) {
      // Each side goes first every other run.
      for (const side of i % 2 === 0 ? sides : [...sides].reverse()) {
        side.times.push(await side.once());
        if (gapMs > 0) await sleep(gapMs);
      }
    }
    const cpu1 = await Promise.all(sides.map((s) => s.cpuSeconds()));
    const steps = await Promise.all(
      sides.map(async (s) =>
        new Map((stepTimes(await Deno.readTextFile(s.traceFile), "client.event")).map((r) => [r.step, r.p50]))
      ),
    );
    const p = (v: number[], q: number) => fmt(percentile(v, q), 2);
    console.log(
      `${raw ? "application/zip" : "multipart"} POST → terminal SSE event, ${runs} runs each, alternating` +
        `${gapMs > 0 ? `, ${gapMs} ms apart` : ""}, load ${fmt(Deno.loadavg()[0], 1)}\n`,
    );
    console.log(table(
      ["", "p25 ms", "p50 ms", "p75 ms", "manager + node CPU ms per run"],
      sides.map((s, i) => [
        `${s.name} (${i === 0 ? before : after})`,
        p(s.times, 25),
        p(s.times, 50),
        p(s.times, 75),
        fmt((cpu1[i] - cpu0[i]) * 1000 / runs, 2),
      ]),
    ));
    const names = [...steps[1].keys()];
    for (const name of steps[0].keys()) if (!steps[1].has(name)) names.push(name);
    const at = (i: number, name: string) => steps[i].get(name) ?? NaN;
    console.log(`\nWhere the time goes (p50 ms after the submit; the after side's order):\n`);
    console.log(table(
      ["step", "before", "after", "after - before"],
      names.map((n) => [n, fmt(at(0, n), 3), fmt(at(1, n), 3), fmt(at(1, n) - at(0, n), 3)]),
    ));
  } finally {
    for (const side of started) await side.stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}
