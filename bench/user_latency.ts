/**
 * User-path latency benchmark: one instance of `true` on an idle cluster (a
 * manager and one node of one slot), as a user meets it, beside floors
 * measured in the same run.
 *
 * - HTTP: `POST /api/v1/tasks` with the package (multipart, field `package`,
 *   as a form sends it; then as many runs with a raw `application/zip` body,
 *   as `parallelic submit` and the web UI send it) until the task's terminal
 *   event arrives on the live event stream `GET /api/v1/events` (SSE), opened
 *   once beforehand as the web UI keeps it open. Floor, per run: one HTTP POST
 *   of the same multipart body to a trivial Hono handler on the same Deno in
 *   a process of its own (`bench/floor_server.ts`), one NATS request/reply,
 *   one spawn of the same `true` with piped output read to the end.
 * - CLI: `deno run -A main.ts submit --wait DIR` of a task folder, from the
 *   process's start to its exit. Floor: `deno run -A` of an empty script (the
 *   same runtime and flags, started and ended) plus the HTTP floor's p50.
 *
 *   deno run -A bench/user_latency.ts [--runs 200] [--cli-runs 20] [--gap-ms 0] [--trace] [--no-record]
 *
 * `--gap-ms N` leaves the cluster idle N ms between HTTP runs (and between
 * the floor's runs), as a user's submit usually finds it: back to back, the
 * kernel and the processes stay warm.
 *
 * `--trace` adds where a run's time goes, step by step (see Logger.step),
 * for both paths. Targets (BENCHMARKS.md): HTTP p50 within 3 ms of its floor,
 * CLI p50 within 50 ms of its floor. Raw figures go to
 * bench/results/user_latency.jsonl.
 *
 * @module
 */
import { join } from "node:path";
import { readEvents } from "../cli/follow.ts";
import { createLogger, type Logger } from "../core/log.ts";
import { FINAL_STATES, type TaskProgress } from "../core/schema.ts";
import {
  type Benchmark,
  commit,
  epochMs,
  fmt,
  intArg,
  machine,
  percentile,
  ROOT,
  runBenchmark,
  sleep,
  table,
} from "./_util.ts";
import { type BenchCluster, startCluster, TOKEN, truePackage } from "./cluster.ts";
import { measureFloor, stepTable } from "./latency.ts";

/** The live event stream, open for the whole run: resolves a task's wait with its terminal event's arrival time. */
export async function openEvents(cluster: BenchCluster, log: Logger) {
  const res = await cluster.api("/api/v1/events?topics=tasks", { headers: { accept: "text/event-stream" } });
  if (!res.ok || !res.body) throw new Error(`GET /api/v1/events answered ${res.status}`);
  const ended = new Map<string, number>();
  const waiters = new Map<string, (atMs: number) => void>();
  let ready!: () => void;
  const isReady = new Promise<void>((r) => ready = r);
  const stop = new AbortController();
  const reading = readEvents(res.body.pipeThrough(new TransformStream(), { signal: stop.signal }), ({ kind, data }) => {
    if (kind === "ready") ready();
    if (kind !== "task") return;
    const event = JSON.parse(data) as TaskProgress;
    if (!FINAL_STATES.has(event.state)) return;
    log.step("client.event");
    const at = epochMs();
    if (event.state !== "succeeded") throw new Error(`Task ${event.taskId} ended ${event.state}`);
    const waiter = waiters.get(event.taskId);
    if (waiter) waiter(at);
    else ended.set(event.taskId, at);
  });
  await isReady;
  return {
    /** When the terminal event of `taskId` arrived (epoch ms). */
    ended(taskId: string): Promise<number> {
      const at = ended.get(taskId);
      if (at !== undefined) return Promise.resolve(at);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`No terminal event for task ${taskId} in 30 s`)), 30_000);
        waiters.set(taskId, (atMs) => {
          clearTimeout(timer);
          waiters.delete(taskId);
          resolve(atMs);
        });
      });
    },
    async close() {
      stop.abort();
      await reading.catch(() => {});
    },
  };
}

/** The package as a multipart form with field `package`, as a browser's FormData sends it. */
export function form(zip: Uint8Array): FormData {
  const f = new FormData();
  f.append("package", new Blob([zip as Uint8Array<ArrayBuffer>], { type: "application/zip" }), "true.zip");
  return f;
}

/** Starts `bench/floor_server.ts`; returns its URL and a stop. */
async function startFloorServer(): Promise<{ url: string } & AsyncDisposable> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "bench", "floor_server.ts")],
    cwd: ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/floor: (\S+)\n/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`bench/floor_server.ts did not start: ${out}`);
    out += value;
  }
  return {
    url: /floor: (\S+)\n/.exec(out)![1],
    [Symbol.asyncDispose]: async () => {
      child.kill("SIGTERM");
      await child.status;
      await reader.cancel().catch(() => {});
    },
  };
}

/** Runs `deno run -A ARGS` in the repository to its end; returns its wall time in ms. */
async function denoRun(args: string[], env: Record<string, string>): Promise<number> {
  const t0 = performance.now();
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...args],
    cwd: ROOT,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const ms = performance.now() - t0;
  if (!out.success) {
    throw new Error(`deno run ${args.join(" ")} failed:\n${new TextDecoder().decode(out.stderr)}`);
  }
  return ms;
}

/** Clears the trace file (its writers append), so that the next phase's steps stand alone. */
async function takeSteps(traceFile: string | undefined, end: string): Promise<string | null> {
  if (!traceFile) return null;
  const text = await Deno.readTextFile(traceFile).catch(() => "");
  await Deno.truncate(traceFile).catch(() => {});
  return text.trim() ? stepTable(text, end) : null;
}

/** The user-path latency benchmark. */
export const userLatency: Benchmark = {
  name: "user_latency",
  summary: "one instance of `true` as a user meets it: HTTP submit → SSE end event, `parallelic submit --wait`",
  flags: { runs: "string", "cli-runs": "string", "gap-ms": "string", trace: "boolean" },
  // Traced, so that the smoke run also proves every step is still noted where it happens.
  tiny: ["--runs", "4", "--cli-runs", "2", "--gap-ms", "1", "--trace"],
  async run(ctx) {
    const runs = intArg(ctx.args, "runs", 200);
    const cliRuns = intArg(ctx.args, "cli-runs", 20);
    const gapMs = intArg(ctx.args, "gap-ms", 0);
    const idle = () => gapMs > 0 ? sleep(gapMs) : Promise.resolve();
    const traceFile = ctx.args.flags.trace === true ? join(ctx.dir, "steps.log") : undefined;
    const client = createLogger({ level: "error", traceFile });
    const env: Record<string, string> = traceFile ? { PARALLELIC_TRACE: traceFile } : {};
    await using cluster = await startCluster(ctx, { env });
    await cluster.addNodes(1, { slots: 1 });
    const zip = await truePackage(ctx.dir, 1);
    const events = await openEvents(cluster, client);
    await using floorServer = await startFloorServer();

    const submitOnce = async (multipart: boolean) => {
      client.step("client.submit");
      const t0 = epochMs();
      const res = await cluster.api("/api/v1/tasks?name=true", {
        method: "POST",
        ...multipart
          ? { body: form(zip) }
          : { headers: { "content-type": "application/zip" }, body: zip as Uint8Array<ArrayBuffer> },
      });
      const { id } = await res.json() as { id: string };
      if (res.status !== 201) throw new Error(`POST /api/v1/tasks answered ${res.status}`);
      client.step("client.answered");
      const t1 = epochMs();
      return { answered: t1 - t0, done: await events.ended(id) - t0 };
    };
    // The node caches the package at its first run (a fresh package is a different benchmark).
    await submitOnce(true);
    await submitOnce(false);
    await takeSteps(traceFile, "");

    const http = { multipart: [] as number[], raw: [] as number[], answered: [] as number[] };
    for (let i = 0; i < runs; i++) {
      const multi = await submitOnce(true);
      http.multipart.push(multi.done);
      http.answered.push(multi.answered);
      await idle();
    }
    const httpSteps = await takeSteps(traceFile, "client.event");
    for (let i = 0; i < runs; i++) {
      http.raw.push((await submitOnce(false)).done);
      await idle();
    }
    await takeSteps(traceFile, "");

    const bin = join(ctx.dir, "true");
    await Deno.copyFile("/usr/bin/true", bin);
    const body = form(zip);
    const floor = await measureFloor(cluster.natsUrl, bin, runs, async () => {
      const res = await fetch(`${floorServer.url}/floor`, { method: "POST", body });
      await res.json();
    }, gapMs);

    // The CLI: a task folder, as users submit one; the floor script as empty as a script can be.
    const folder = join(ctx.dir, "task");
    await Deno.mkdir(folder);
    await Deno.copyFile("/usr/bin/true", join(folder, "true"));
    await Deno.writeTextFile(join(folder, "task.toml"), `[task]\nentrypoint = "true"\ninstances = 1\n`);
    const empty = join(ctx.dir, "empty.ts");
    await Deno.writeTextFile(empty, "");
    const cliEnv = { ...env, PARALLELIC_MANAGER: cluster.url, PARALLELIC_TOKEN: TOKEN };
    const submitArgs = [join(ROOT, "main.ts"), "submit", "--wait", folder];
    await denoRun(submitArgs, cliEnv);
    await takeSteps(traceFile, "");
    const cli: number[] = [];
    const start: number[] = [];
    for (let i = 0; i < cliRuns; i++) {
      start.push(await denoRun([empty], {}));
      client.step("client.submit");
      cli.push(await denoRun(submitArgs, cliEnv));
      client.step("client.done");
    }
    const cliSteps = await takeSteps(traceFile, "client.done");
    await events.close();

    const p50 = (v: number[]) => percentile(v, 50);
    const row = (what: string, v: number[]) => [what, fmt(p50(v), 2), fmt(percentile(v, 99), 2)];
    const httpFloor = p50(floor.total);
    const cliFloor = p50(start) + httpFloor;
    const httpOver = p50(http.multipart) - httpFloor;
    const cliOver = p50(cli) - cliFloor;
    if (ctx.args.flags.record !== false) {
      const line = {
        at: new Date().toISOString(),
        machine: await machine(),
        code: await commit(),
        load: Deno.loadavg()[0],
        runs,
        cliRuns,
        ...gapMs > 0 ? { gapMs } : {},
        traced: traceFile !== undefined,
        p50Ms: {
          multipartToEvent: p50(http.multipart),
          rawToEvent: p50(http.raw),
          multipartAnswered: p50(http.answered),
          floorHttp: p50(floor.before),
          floorNats: p50(floor.nats),
          floorSpawn: p50(floor.spawn),
          floor: httpFloor,
          cli: p50(cli),
          denoStart: p50(start),
          cliFloor,
        },
        p99Ms: { multipartToEvent: percentile(http.multipart, 99), cli: percentile(cli, 99) },
      };
      await Deno.writeTextFile(join(ROOT, "bench", "results", "user_latency.jsonl"), `${JSON.stringify(line)}\n`, {
        append: true,
      });
    }
    return {
      command: `--runs ${runs} --cli-runs ${cliRuns}${gapMs > 0 ? ` --gap-ms ${gapMs}` : ""}${
        traceFile ? " --trace" : ""
      }`,
      text: [
        `User-path latency: one instance of \`true\`. HTTP (${runs} runs): multipart POST → terminal SSE event p50 ` +
        `**${fmt(p50(http.multipart), 2)} ms**, floor (HTTP POST to a trivial Hono handler + NATS request/reply + ` +
        `spawn) p50 ${fmt(httpFloor, 2)} ms: ${fmt(httpOver, 2)} ms above it (target <= 3 ms: ` +
        `${httpOver <= 3 ? "met" : "missed"}). CLI (${cliRuns} runs): \`parallelic submit --wait\` p50 ` +
        `**${fmt(p50(cli), 1)} ms**, floor (\`deno run\` of an empty script + the HTTP floor) p50 ${
          fmt(cliFloor, 1)
        } ` +
        `ms: ${fmt(cliOver, 1)} ms above it (target <= 50 ms: ${cliOver <= 50 ? "met" : "missed"}).`,
        "",
        table(["what", "p50 ms", "p99 ms"], [
          row("multipart POST → answered (upload, package check, task stored)", http.answered),
          row("**multipart POST → terminal event on /api/v1/events**", http.multipart),
          row("application/zip POST → terminal event on /api/v1/events", http.raw),
          row("floor: HTTP POST of the same body to a trivial Hono handler", floor.before),
          row("floor: NATS request/reply", floor.nats),
          row("floor: spawn `true`, piped output read to the end", floor.spawn),
          row("**floor: the three**", floor.total),
          row("**`parallelic submit --wait DIR`, process start to exit**", cli),
          row("floor: `deno run -A` of an empty script", start),
        ]),
        ...httpSteps ? ["", "Where an HTTP run's time goes (p50 over the multipart runs):", "", httpSteps] : [],
        ...cliSteps ? ["", "Where a CLI run's time goes (p50 over the runs):", "", cliSteps] : [],
      ].join("\n"),
    };
  },
};

if (import.meta.main) await runBenchmark(userLatency, Deno.args);
