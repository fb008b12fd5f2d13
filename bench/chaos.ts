/**
 * Chaos soak: a manager on an external nats-server and two node processes run
 * a task whose instances write an output and whose finalize checks every
 * output, while seeded random faults hit the nodes, nats-server and the
 * manager: SIGKILL, SIGTERM (each then restarted) or SIGSTOP (then SIGCONT).
 * Afterwards every instance must be recorded once (succeeded, one final
 * result), every output stored, finalize must have seen them all, and no
 * process of the task may be left anywhere.
 *
 *   deno run -A bench/chaos.ts [--instances 2000] [--faults 20] [--seed N] [--sleep-ms 200] [--slots 4] [--no-record]
 *
 * Raw results go to bench/results/chaos.jsonl, one line per run.
 *
 * @module
 */
import { join } from "node:path";
import type { InstanceView, TaskView } from "../core/schema.ts";
import { type NatsServer, startNatsServer } from "../core/nats_server.ts";
import { type MainProcess, startMainProcess } from "../tools/main_process.ts";
import { makeZip } from "../tools/make_zip.ts";
import { type ManagerProcess, managerProcess } from "../tools/manager_process.ts";
import { type Benchmark, fmt, intArg, ROOT, runBenchmark, sleep, table } from "./_util.ts";
import { leftoverProcesses, listNodesOrNone, mulberry32, unzipTo } from "./chaos_util.ts";

/** The admin token of the soak's manager. */
const CHAOS_TOKEN = "parallelic-chaos-token";

/** What a chaos run does. */
export interface ChaosOptions {
  instances: number;
  faults: number;
  seed: number;
  /** How long each instance sleeps. */
  sleepMs: number;
  /** Slots of each of the two nodes. */
  slots: number;
  /** A folder for the run's data (removed by the caller). */
  dir: string;
  /** Gives up on the task after this long. */
  timeoutMs: number;
  /** Progress lines. */
  log?: (line: string) => void;
}

/** One injected fault. */
export interface Fault {
  /** `node:a`, `node:b`, `nats` or `manager`. */
  target: string;
  signal: "SIGKILL" | "SIGTERM" | "SIGSTOP";
  /** Seconds since the task was submitted. */
  atS: number;
  /** How long until the manager answered and both nodes were ready again (null: never). */
  recoveryMs: number | null;
}

/** What a chaos run found. */
export interface ChaosResult {
  seed: number;
  instances: number;
  faults: Fault[];
  recoveries: number;
  /** Submit to the task's end, seconds. */
  taskS: number;
  state: string;
  /** Instances that needed more than one attempt. */
  retried: number;
  /** What finalize counted. */
  finalizeSeen: number | null;
  /** Every broken promise, empty when none. */
  problems: string[];
}

const SIGNALS = ["SIGKILL", "SIGTERM", "SIGSTOP"] as const;
const TARGETS = ["node:a", "node:b", "nats", "manager"];

/** The task: each instance writes `result.txt` (its index, then "done"); finalize checks them all. */
function chaosTask(instances: number, sleepMs: number): Promise<Uint8Array> {
  return makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = ${instances}\n[env]\nCHAOS_N = "${instances}"\n` +
      `[finalize]\nentrypoint = "check.sh"\n`,
    "run.sh": `#!/bin/sh
echo "$PARALLELIC_INSTANCE" > "$PARALLELIC_OUTPUT/result.txt"
sleep ${(sleepMs / 1000).toFixed(3)}
echo done >> "$PARALLELIC_OUTPUT/result.txt"
`,
    // Counts the outputs whose first line is their own index and that end with "done"; fails unless all are there.
    "check.sh": `#!/bin/sh
cd "$PARALLELIC_WORKSPACE" || exit 2
find . -name result.txt | awk -v n="$CHAOS_N" '
{ split($0, p, "/"); i = p[2]; first = ""; last = ""
  while ((getline line < $0) > 0) { if (first == "") first = line; last = line }
  close($0)
  if (first == i && last == "done") ok[i] = 1 }
END { c = 0; for (k = 0; k < n; k++) if (ok[k]) c++; else miss = miss " " k
  print c > "'"$PARALLELIC_OUTPUT"'/seen.txt"; print miss > "'"$PARALLELIC_OUTPUT"'/missing.txt"
  exit c == n ? 0 : 1 }'
`,
  });
}

/** Checks the instance records: each succeeded once; earlier attempts have no recorded result. */
function checkRecords(list: InstanceView[], total: number, problems: string[]) {
  if (list.length !== total) problems.push(`${list.length} instance records instead of ${total}`);
  const seen = new Set<number>();
  for (const i of list) {
    if (seen.has(i.index)) problems.push(`instance ${i.index} recorded twice`);
    seen.add(i.index);
    const last = i.history[i.history.length - 1];
    if (i.state !== "succeeded" || last?.exitCode !== 0 || last.attempt !== i.attempt) {
      problems.push(`instance ${i.index} ${i.state}: ${JSON.stringify(i.history)}`);
      continue;
    }
    for (const h of i.history.slice(0, -1)) {
      if (h.exitCode !== null) problems.push(`instance ${i.index} has two results: ${JSON.stringify(i.history)}`);
    }
  }
}

/** Every instance's records, page by page. */
async function allInstances(api: ManagerProcess["api"], id: string, total: number): Promise<InstanceView[]> {
  const out: InstanceView[] = [];
  for (let from = 0; from < total; from += 5000) {
    const res = await api(`/api/v1/tasks/${id}/instances?from=${from}&limit=5000`);
    out.push(...(await res.json() as { instances: InstanceView[] }).instances);
  }
  return out;
}

/** Polls a task until it is final, through the manager's restarts; throws after `timeoutMs`. */
async function waitForEnd(manager: ManagerProcess, id: string, timeoutMs: number): Promise<TaskView> {
  const deadline = Date.now() + timeoutMs;
  let last = "no answer";
  while (Date.now() < deadline) {
    try {
      const res = await manager.api(`/api/v1/tasks/${id}`);
      if (res.ok) {
        const task = await res.json() as TaskView;
        if (["succeeded", "failed", "cancelled"].includes(task.state)) return task;
        last = `${task.state} ${JSON.stringify(task.counts)}`;
      } else last = `${res.status} ${await res.text()}`;
    } catch (e) {
      last = String(e);
    }
    await sleep(200);
  }
  throw new Error(`task ${id} not final after ${timeoutMs} ms: ${last}`);
}

/** Runs one chaos soak; see the module doc. */
export async function runChaos(o: ChaosOptions): Promise<ChaosResult> {
  const log = o.log ?? (() => {});
  const rand = mulberry32(o.seed);
  const pick = <T>(xs: readonly T[]) => xs[Math.floor(rand() * xs.length)];
  const between = (lo: number, hi: number) => lo + rand() * (hi - lo);
  const natsDir = join(o.dir, "nats");
  let nats: NatsServer = await startNatsServer({ storeDir: natsDir, port: 0 });
  const natsPort = nats.port;
  const manager = managerProcess(join(o.dir, "manager"), [
    `--nats=${nats.url}`,
    "--lease-ms=3000",
    "--heartbeat-ms=200",
  ], CHAOS_TOKEN);
  const nodes = new Map<string, MainProcess>();
  const startNode = (name: string) =>
    nodes.set(
      name,
      startMainProcess(
        [
          "node",
          `--nats=${nats.url}`,
          `--name=${name}`,
          `--work-dir=${join(o.dir, `node-${name}`)}`,
          `--slots=${o.slots}`,
        ],
        { env: {} },
      ),
    );
  const problems: string[] = [];
  const faults: Fault[] = [];
  try {
    await manager.start();
    startNode("a");
    startNode("b");
    const healthy = async () => {
      const up = await manager.api("/healthz").then((r) => r.ok, () => false);
      if (!up) return false;
      const list = await listNodesOrNone(manager.api);
      return ["a", "b"].every((n) => list.some((x) => x.name === n && x.state === "ready"));
    };
    const waitHealthy = async (ms: number) => {
      const deadline = Date.now() + ms;
      while (Date.now() < deadline) {
        if (await healthy()) return true;
        await sleep(100);
      }
      return false;
    };
    if (!await waitHealthy(60_000)) throw new Error("the cluster did not come up");
    const id = await manager.submit(await chaosTask(o.instances, o.sleepMs));
    const t0 = performance.now();
    log(`chaos: seed ${o.seed}, task ${id}, ${o.instances} instances, ${o.faults} faults`);
    let ended = false;
    const ending = waitForEnd(manager, id, o.timeoutMs).finally(() => ended = true);
    ending.catch(() => {});
    // Faults spread over the expected run time, one at a time.
    const expectedS = o.instances * o.sleepMs / 1000 / (2 * o.slots);
    for (let k = 0; k < o.faults; k++) {
      await sleep(between(300, Math.max(600, 1000 * expectedS / o.faults)));
      const target = pick(TARGETS);
      const signal = pick(SIGNALS);
      const atS = (performance.now() - t0) / 1000;
      const tf = performance.now();
      if (signal === "SIGSTOP") {
        const pid = target === "nats"
          ? nats.pid
          : target === "manager"
          ? manager.pid!
          : nodes.get(target.slice(5))!.child.pid;
        Deno.kill(pid, "SIGSTOP");
        await sleep(between(300, 2500));
        Deno.kill(pid, "SIGCONT");
      } else if (target === "nats") {
        await nats.kill(signal);
        await nats.exited;
        await sleep(between(200, 1500));
        nats = await startNatsServer({ storeDir: natsDir, port: natsPort });
      } else if (target === "manager") {
        await manager.stop(signal);
        await sleep(between(200, 1500));
        await manager.start();
      } else {
        const name = target.slice(5);
        await nodes.get(name)!.kill(signal);
        await sleep(between(200, 1500));
        startNode(name);
      }
      const recovered = await waitHealthy(60_000);
      const recoveryMs = recovered ? Math.round(performance.now() - tf) : null;
      faults.push({ target, signal, atS: Math.round(atS * 10) / 10, recoveryMs });
      log(
        `chaos: ${signal} ${target} at ${atS.toFixed(1)} s${ended ? " (after the task ended)" : ""}, ` +
          (recovered ? `recovered in ${recoveryMs} ms` : "NOT recovered in 60 s"),
      );
      if (!recovered) problems.push(`no recovery after ${signal} of ${target}`);
    }
    const task = await ending.catch((e) => {
      problems.push(String(e));
      return null;
    });
    const taskS = (performance.now() - t0) / 1000;
    const state = task?.state ?? "unfinished";
    if (state !== "succeeded") problems.push(`task ${id} ${state}`);
    const list = await allInstances(manager.api, id, o.instances);
    checkRecords(list, o.instances, problems);
    const finalizeSeen = await checkOutputs(manager, id, o, problems);
    // The task's processes: none may outlive it (nodes kill what they leave behind, even after SIGKILL).
    let left = await leftoverProcesses(id, o.dir);
    for (let n = 0; n < 100 && left.length; n++) {
      await sleep(100);
      left = await leftoverProcesses(id, o.dir);
    }
    if (left.length) problems.push(`processes of the task left: ${left.join("; ")}`);
    return {
      seed: o.seed,
      instances: o.instances,
      faults,
      recoveries: faults.filter((f) => f.recoveryMs !== null).length,
      taskS: Math.round(taskS * 10) / 10,
      state,
      retried: list.filter((i) => i.history.length > 1).length,
      finalizeSeen,
      problems,
    };
  } finally {
    await Promise.all([...nodes.values()].map((n) => n.kill("SIGTERM")));
    await manager.stop("SIGTERM");
    await nats.stop();
  }
}

/** Downloads the workspace: each instance's output and finalize's count. Returns what finalize saw. */
async function checkOutputs(
  manager: ManagerProcess,
  id: string,
  o: ChaosOptions,
  problems: string[],
): Promise<number | null> {
  const res = await manager.api(`/api/v1/tasks/${id}/workspace.zip`);
  if (!res.ok) {
    problems.push(`workspace.zip answered ${res.status}`);
    return null;
  }
  const out = join(o.dir, "workspace");
  await unzipTo(new Uint8Array(await res.arrayBuffer()), out);
  let missing = 0;
  for (let i = 0; i < o.instances; i++) {
    const text = await Deno.readTextFile(join(out, String(i), "result.txt")).catch(() => null);
    if (text !== `${i}\ndone\n`) {
      if (missing++ < 10) problems.push(`output of instance ${i}: ${JSON.stringify(text)}`);
    }
  }
  if (missing) problems.push(`${missing} outputs missing or wrong`);
  const seen = await Deno.readTextFile(join(out, "finalize", "seen.txt")).catch(() => null);
  if (seen?.trim() !== String(o.instances)) problems.push(`finalize saw ${JSON.stringify(seen)} of ${o.instances}`);
  return seen === null ? null : Number(seen.trim());
}

/** The chaos benchmark. */
export const chaos: Benchmark = {
  name: "chaos",
  summary: "random SIGKILL/SIGTERM/SIGSTOP of nodes, nats-server and manager during a task: nothing lost",
  flags: { instances: "string", faults: "string", seed: "string", "sleep-ms": "string", slots: "string" },
  tiny: ["--instances", "20", "--faults", "2"],
  async run(ctx) {
    const instances = intArg(ctx.args, "instances", 2000);
    const faultCount = intArg(ctx.args, "faults", 20);
    const seed = intArg(ctx.args, "seed", Math.floor(Math.random() * 2 ** 31));
    const sleepMs = intArg(ctx.args, "sleep-ms", 200);
    const slots = intArg(ctx.args, "slots", 4);
    const r = await runChaos({
      instances,
      faults: faultCount,
      seed,
      sleepMs,
      slots,
      dir: ctx.dir,
      timeoutMs: 60_000 + instances * 100,
      log: console.log,
    });
    await Deno.writeTextFile(
      join(ROOT, "bench", "results", "chaos.jsonl"),
      JSON.stringify({ at: new Date().toISOString(), sleepMs, slots, ...r }) + "\n",
      { append: true },
    );
    const recov = r.faults.map((f) => f.recoveryMs).filter((m): m is number => m !== null);
    const verdict = r.problems.length
      ? `**${r.problems.length} problems** (seed ${seed}): ${r.problems.slice(0, 5).join("; ")}`
      : `Nothing lost (seed ${seed}): every instance recorded once, every output stored, finalize saw all.`;
    return {
      text: `${verdict}\n\n` + table(
        ["instances", "faults", "recoveries", "recovery max", "retried", "task time", "state"],
        [[
          fmt(instances),
          `${r.faults.length} (${SIGNALS.map((s) => `${r.faults.filter((f) => f.signal === s).length} ${s}`)})`,
          r.recoveries,
          recov.length ? `${fmt(Math.max(...recov) / 1000, 1)} s` : "-",
          fmt(r.retried),
          `${fmt(r.taskS, 1)} s`,
          r.state,
        ]],
      ),
      command: `--instances ${instances} --faults ${faultCount} --seed ${seed} --sleep-ms ${sleepMs} --slots ${slots}`,
    };
  },
};

if (import.meta.main) {
  const report = await runBenchmark(chaos, Deno.args);
  if (report && /\*\*\d+ problems\*\*/.test(report.text)) Deno.exit(1);
}
