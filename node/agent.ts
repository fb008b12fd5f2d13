/**
 * The compute node: joins a manager over NATS, runs the instances assigned
 * to it (bounded by its slots), streams their logs into the log stream,
 * gives them the data sets they name and stores their outputs (see
 * `instance_io.ts`), and reports their results in acknowledged batches.
 *
 * @module
 */
import { jetstream } from "@nats-io/jetstream";
import { type ObjectStore, Objm } from "@nats-io/obj";
import { connect, headers, type NatsConnection } from "@nats-io/transport-node";
import { hostname } from "node:os";
import { join } from "node:path";
import { createBus, unwrap } from "../core/bus.ts";
import { type Bucket, openBucket } from "../core/objects.ts";
import { type Clock, systemClock, type TimerId } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { matrixParams } from "../core/task_toml.ts";
import {
  type Assignment,
  DATA_BUCKET,
  type InstanceRef,
  logSubject,
  nodeAssign,
  nodeHeartbeat,
  nodeKill,
  nodeRegister,
  nodeRejoin,
  PACKAGE_BUCKET,
  type Result,
  type RunSpec,
  taskResults,
  WORKSPACE_BUCKET,
} from "../core/schema.ts";
import { copyTree, createPackageCache } from "./cache.ts";
import { createDataCache } from "./data_cache.ts";
import { type InstanceIo, prepareInstanceIo } from "./instance_io.ts";
import { removeTree } from "./readonly.ts";

/** The version nodes report. */
export const VERSION = "0.1.0";

/** Options of {@linkcode startNode}. */
export interface NodeOptions {
  /** NATS server URL(s), comma-separated. */
  natsUrl: string;
  /** Unique node name. @default {`<hostname>-<random>`} */
  name?: string;
  /** How many instances (of 1 cpu) run at once. @default {CPU count} */
  slots?: number;
  /** Folder for the package cache and instance copies. */
  workDir: string;
  /** Labels for placement (`zone=a`). */
  labels?: Record<string, string>;
  /** Memory offered, bytes. @default {total memory} */
  memoryBytes?: number;
  /** GPUs offered. @default {counted with nvidia-smi, 0 without} */
  gpus?: number;
  /** Most bytes of data sets kept in the node's cache (`--cache-size`). @default {10 GiB} */
  cacheBytes?: number;
  /** Kill grace: SIGTERM, then SIGKILL after this long. @default {1000} */
  killGraceMs?: number;
  /** Logger. */
  log: Logger;
  /** Clock. @default {systemClock} */
  clock?: Clock;
  /** An existing connection to use instead of connecting (tests). */
  nc?: NatsConnection;
}

/** A running compute node. */
export interface ComputeNode {
  /** The node's name. */
  readonly name: string;
  /** Resolves once the node registered with a manager. */
  readonly registered: Promise<void>;
  /** Counters for tests and metrics. */
  stats(): {
    started: number;
    finished: number;
    packageFetches: number;
    dataFetches: number;
    running: number;
    queued: number;
  };
  /** Stops taking work, kills what runs, flushes results, disconnects. */
  stop(): Promise<void>;
}

/** One instance the node holds. */
interface Job {
  ref: InstanceRef;
  digest: string;
  run: RunSpec;
  child?: Deno.ChildProcess;
  killed?: string;
  dir?: string;
}

const PASS_ENV = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL"];

const keyOf = (r: InstanceRef) => `${r.taskId}/${r.index}/${r.attempt}`;

/** Counts GPUs with nvidia-smi; 0 where there is none. */
export function countGpus(): number {
  try {
    const out = new Deno.Command("nvidia-smi", { args: ["-L"], stdout: "piped", stderr: "null" }).outputSync();
    if (!out.success) return 0;
    return new TextDecoder().decode(out.stdout).split("\n").filter((l) => l.startsWith("GPU ")).length;
  } catch {
    return 0;
  }
}

/** Starts a compute node and joins the manager reachable over `natsUrl`. */
export async function startNode(options: NodeOptions): Promise<ComputeNode> {
  const clock = options.clock ?? systemClock;
  const name = options.name ?? `${hostname().split(".")[0]}-${crypto.randomUUID().slice(0, 4)}`;
  const log = options.log.scope({ node: name });
  const slots = options.slots ?? navigator.hardwareConcurrency;
  const killGraceMs = options.killGraceMs ?? 1000;
  const ownConnection = !options.nc;
  const nc = options.nc ?? await connect({
    servers: options.natsUrl.split(","),
    name: `parallelic-node-${name}`,
    maxReconnectAttempts: -1,
    reconnectTimeWait: 250,
    waitOnFirstConnect: true,
  });
  const bus = createBus(nc, log);
  const js = jetstream(nc);
  const abort = new AbortController();
  const signal = abort.signal;
  let store: Promise<ObjectStore> | undefined;
  const openStore = () => {
    store ??= new Objm(js).open(PACKAGE_BUCKET);
    store.catch(() => store = undefined);
    return store;
  };
  const packagesDir = join(options.workDir, "packages");
  const runsDir = join(options.workDir, "runs");
  // A run cut short may have left a read-only finalize workspace behind.
  await removeTree(runsDir);
  await Deno.mkdir(packagesDir, { recursive: true });
  await Deno.mkdir(runsDir, { recursive: true });
  const cache = createPackageCache(packagesDir, openStore);
  const buckets = new Map<string, Promise<Bucket>>();
  const bucket = (bucketName: string) => {
    let opened = buckets.get(bucketName);
    if (!opened) {
      buckets.set(bucketName, opened = openBucket(nc, bucketName));
      opened.catch(() => buckets.delete(bucketName));
    }
    return opened;
  };
  const io = {
    data: await createDataCache({
      dir: join(options.workDir, "data"),
      capBytes: options.cacheBytes ?? 10 * 2 ** 30,
      bucket: () => bucket(DATA_BUCKET),
      log,
    }),
    workspace: () => bucket(WORKSPACE_BUCKET),
    log,
  };

  const queue: Job[] = [];
  const running = new Map<string, Job>();
  const unacked = new Map<string, Result>();
  const pendingResults: Result[] = [];
  let usedSlots = 0;
  let started = 0;
  let finished = 0;
  let heartbeatMs = 1000;
  let heartbeatTimer: TimerId | undefined;
  let flushTimer: TimerId | undefined;
  let stopping = false;

  const baseEnv: Record<string, string> = {};
  for (const k of PASS_ENV) {
    const v = Deno.env.get(k);
    if (v !== undefined) baseEnv[k] = v;
  }

  // -------------------------------------------------------------------------
  // Results

  const report = (result: Result) => {
    unacked.set(keyOf(result), result);
    pendingResults.push(result);
    finished++;
    if (flushTimer === undefined) flushTimer = clock.setTimeout(flush, 0);
  };

  function flush(): void {
    flushTimer = undefined;
    while (pendingResults.length > 0) {
      const batch = pendingResults.splice(0, 500);
      bus.request(taskResults, { node: name, results: batch }, { timeoutMs: 10_000 }).then(unwrap).then(
        () => {
          for (const r of batch) unacked.delete(keyOf(r));
        },
        (e) => {
          log.warn("node:results-unacknowledged", { count: batch.length, error: (e as Error).message });
          // Put them back and try again a little later; fencing makes resending safe.
          pendingResults.push(...batch.filter((r) => unacked.has(keyOf(r))));
          if (!stopping && flushTimer === undefined) flushTimer = clock.setTimeout(flush, 1000);
        },
      );
    }
  }

  // -------------------------------------------------------------------------
  // Running instances

  const pump = () => {
    while (!stopping && queue.length > 0 && usedSlots + Math.min(queue[0].run.cpus, slots) <= slots) {
      const job = queue.shift()!;
      usedSlots += Math.min(job.run.cpus, slots);
      running.set(keyOf(job.ref), job);
      void runJob(job).finally(() => {
        usedSlots -= Math.min(job.run.cpus, slots);
        running.delete(keyOf(job.ref));
        pump();
      });
    }
  };

  const killJob = (job: Job, why: string) => {
    if (job.killed || !job.child) {
      job.killed ??= why;
      return;
    }
    job.killed = why;
    const pid = job.child.pid;
    try {
      Deno.kill(-pid, "SIGTERM");
    } catch { /* gone */ }
    const t = clock.setTimeout(() => {
      try {
        Deno.kill(-pid, "SIGKILL");
      } catch { /* gone */ }
    }, killGraceMs);
    job.child.status.finally(() => clock.clearTimeout(t));
  };

  async function runJob(job: Job): Promise<void> {
    const { ref, run } = job;
    const startedAt = clock.now();
    const result = (fields: Partial<Result>): Result => ({
      ...ref,
      exitCode: null,
      signal: null,
      startedAt,
      endedAt: clock.now(),
      error: null,
      outputBytes: 0,
      logBytes: 0,
      ...fields,
    });
    let dir: string | undefined;
    let instanceIo: InstanceIo | undefined;
    try {
      const root = await cache.root(job.digest as `sha256-${string}`, run.entrypoint);
      if (job.killed) return report(result({ error: job.killed }));
      dir = join(runsDir, ref.taskId, `${ref.index}.${ref.attempt}`);
      await copyTree(root, dir);
      try {
        instanceIo = await prepareInstanceIo(io, ref, run, dir);
      } catch (e) {
        // Not worded "node …": that would read as a lost node, which uses up no retry.
        return report(result({ error: `could not prepare data and outputs on ${name}: ${(e as Error).message}` }));
      }
      if (job.killed) return report(result({ error: job.killed }));
      const env: Record<string, string> = { ...baseEnv, ...run.env, ...instanceIo.env };
      env.PARALLELIC_TASK_ID = ref.taskId;
      env.PARALLELIC_INSTANCE = String(ref.index);
      env.PARALLELIC_INSTANCES = String(run.instances);
      env.PARALLELIC_ATTEMPT = String(ref.attempt);
      env.PARALLELIC_NODE = name;
      env.PARALLELIC_TASK_ROOT = dir;
      for (const [k, v] of Object.entries(matrixParams(run, ref.index))) {
        env[`PARALLELIC_PARAM_${k.toUpperCase()}`] = String(v);
      }
      let child: Deno.ChildProcess;
      try {
        child = new Deno.Command(join(dir, instanceIo.entrypoint), {
          args: instanceIo.args,
          cwd: join(dir, run.workdir),
          env,
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
          detached: true,
        }).spawn();
      } catch (e) {
        return report(result({ error: `cannot start '${instanceIo.entrypoint}': ${(e as Error).message}` }));
      }
      job.child = child;
      started++;
      if (job.killed) killJob(job, job.killed);
      let timeout: TimerId | undefined;
      if (run.timeoutMs !== null) {
        timeout = clock.setTimeout(() => killJob(job, `timed out after ${run.timeoutMs} ms`), run.timeoutMs);
      }
      const publishes: Promise<unknown>[] = [];
      let logBytes = 0;
      const pipe = async (stream: ReadableStream<Uint8Array>, which: "stdout" | "stderr") => {
        const subject = logSubject(ref.taskId, ref.index);
        for await (const chunk of stream) {
          logBytes += chunk.byteLength;
          const h = headers();
          h.set("Parallelic-Attempt", String(ref.attempt));
          h.set("Parallelic-Stream", which);
          publishes.push(
            js.publish(subject, chunk, { headers: h }).catch((e) => {
              log.warn("node:log-publish-failed", { taskId: ref.taskId, index: ref.index, error: String(e) });
            }),
          );
          if (publishes.length > 64) await Promise.all(publishes.splice(0));
        }
      };
      const [status] = await Promise.all([child.status, pipe(child.stdout, "stdout"), pipe(child.stderr, "stderr")]);
      if (timeout !== undefined) clock.clearTimeout(timeout);
      await Promise.all(publishes);
      // Outputs are stored before the result is sent: a result means its outputs are in the workspace.
      let outputBytes = 0;
      let error = job.killed ?? null;
      if (!stopping && !job.killed?.startsWith("stale")) {
        try {
          outputBytes = await instanceIo.storeOutputs();
        } catch (e) {
          error ??= `could not store outputs from ${name}: ${(e as Error).message}`;
        }
      }
      report(result({
        exitCode: status.signal ? null : status.code,
        signal: status.signal ?? null,
        error,
        outputBytes,
        logBytes,
      }));
    } catch (e) {
      report(result({ error: `node ${name} could not run it: ${(e as Error).message}` }));
    } finally {
      await instanceIo?.cleanup();
      if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    }
  }

  // -------------------------------------------------------------------------
  // Messages

  bus.subscribe(nodeAssign(name), (msg: Assignment) => {
    for (const t of msg.tasks) {
      for (const item of t.items) {
        const ref = { taskId: t.taskId, index: item.index, attempt: item.attempt };
        if (running.has(keyOf(ref)) || unacked.has(keyOf(ref))) continue;
        queue.push({ ref, digest: t.digest, run: t.run });
      }
    }
    pump();
  }, { signal });

  bus.subscribe(nodeKill(name), (msg) => {
    const matches = (ref: InstanceRef) =>
      msg.items.some((k) =>
        k.taskId === ref.taskId && (k.index === undefined || k.index === ref.index) &&
        (k.attempt === undefined || k.attempt === ref.attempt)
      );
    for (let i = queue.length - 1; i >= 0; i--) if (matches(queue[i].ref)) queue.splice(i, 1);
    for (const job of running.values()) if (matches(job.ref)) killJob(job, msg.reason);
    // A stale result nobody will accept need not be resent.
    for (const [k, r] of unacked) if (matches(r)) unacked.delete(k);
  }, { signal });

  const holding = (): InstanceRef[] => [
    ...queue.map((j) => j.ref),
    ...[...running.values()].map((j) => j.ref),
    ...[...unacked.values()].map(({ taskId, index, attempt }) => ({ taskId, index, attempt })),
  ];

  const heartbeat = () => {
    heartbeatTimer = undefined;
    if (stopping) return;
    try {
      bus.publish(nodeHeartbeat, { name, sentAt: clock.now(), usedSlots, holding: holding() });
    } catch (e) {
      log.warn("node:heartbeat-failed", { error: String(e) });
    }
    heartbeatTimer = clock.setTimeout(heartbeat, heartbeatMs);
  };

  let registering: Promise<void> | undefined;
  const register = () => {
    registering ??= (async () => {
      let delay = 100;
      const memoryBytes = options.memoryBytes ?? Deno.systemMemoryInfo().total;
      while (!stopping) {
        try {
          const reply = unwrap(
            await bus.request(nodeRegister, {
              name,
              slots,
              cpus: navigator.hardwareConcurrency,
              memoryBytes,
              gpus: options.gpus ?? countGpus(),
              labels: options.labels ?? {},
              version: VERSION,
              hostname: hostname(),
              holding: holding(),
            }, { timeoutMs: 3000 }),
          );
          heartbeatMs = reply.heartbeatMs;
          log.info("node:registered", { slots, heartbeatMs, leaseMs: reply.leaseMs });
          if (heartbeatTimer === undefined) heartbeat();
          return;
        } catch (e) {
          log.warn("node:register-failed", { error: (e as Error).message, retryInMs: delay });
          await new Promise((r) => setTimeout(r, delay));
          delay = Math.min(delay * 2, 5000);
        }
      }
    })().finally(() => registering = undefined);
    return registering;
  };

  bus.subscribe(nodeRejoin(name), (msg) => {
    log.warn("node:rejoin", { reason: msg.reason });
    void register();
  }, { signal });

  const registered = register();

  return {
    name,
    registered,
    stats: () => ({
      started,
      finished,
      packageFetches: cache.fetches,
      dataFetches: io.data.fetches,
      running: running.size,
      queued: queue.length,
    }),
    async stop() {
      if (stopping) return;
      stopping = true;
      abort.abort();
      if (heartbeatTimer !== undefined) clock.clearTimeout(heartbeatTimer);
      queue.length = 0;
      for (const job of running.values()) killJob(job, "node stopping");
      const deadline = Date.now() + killGraceMs + 2000;
      while (running.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      if (flushTimer !== undefined) clock.clearTimeout(flushTimer);
      flush();
      await registering?.catch(() => {});
      if (ownConnection) await nc.drain().catch(() => {});
    },
  };
}
