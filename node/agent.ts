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
import { headers, type NatsConnection } from "@nats-io/transport-node";
import { hostname } from "node:os";
import { join } from "node:path";
import { createBus, unwrap } from "../core/bus.ts";
import { type Bucket, openBucket } from "../core/objects.ts";
import { type Clock, nextTurn, systemClock, type TimerId } from "../core/clock.ts";
import { ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import type { NatsCredentials, NatsTls } from "../core/nats_connect.ts";
import { matrixParams } from "../core/task_toml.ts";
import {
  type Assignment,
  DATA_BUCKET,
  type InstanceRef,
  logSubject,
  nodeAssign,
  nodeHeartbeat,
  nodeKill,
  nodeLeaving,
  nodeLeft,
  NodeName,
  nodeRegister,
  nodeRejoin,
  PACKAGE_BUCKET,
  type Result,
  type RunSpec,
  taskResults,
  WORKSPACE_BUCKET,
} from "../core/schema.ts";
import { createPackageCache } from "./cache.ts";
import { loadLibc } from "./libc.ts";
import { createRunDirs, type RunDir } from "./run_dirs.ts";
import { createSpawner, type InstanceProcess, type OutputStream } from "./spawn.ts";
import { connectNode } from "./join.ts";
import { asUser, checkReachable, resolveRunAs, userEnv } from "./run_as.ts";
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
  /**
   * Least time between two result batches while other instances run or wait
   * (the last result of a burst, and a lone one, go at once). @default {4}
   */
  resultIntervalMs?: number;
  /**
   * On stop, how long running instances may go on before they are killed and
   * handed back to the manager (`--grace`). @default {30000}
   */
  graceMs?: number;
  /** Serve the node's own metrics at `http://127.0.0.1:PORT/metrics` (`--metrics-port`). */
  metricsPort?: number;
  /** Logger. */
  log: Logger;
  /** Clock. @default {systemClock} */
  clock?: Clock;
  /** An existing connection to use instead of connecting (tests). */
  nc?: NatsConnection;
  /** The join token, needed until this node's own key is known to NATS (see `node/join.ts`). */
  joinToken?: string;
  /** Fixed NATS credentials (an external server, or the manager's own node): no join. */
  credentials?: NatsCredentials;
  /** TLS towards NATS. */
  tls?: NatsTls;
  /** Run instances as this OS user (the node must run as root; see `node/run_as.ts`). */
  runAs?: string;
  /**
   * Benchmarks only: report every instance as exited 0 at once, without
   * fetching, copying or spawning anything (`bench/dispatch.ts` measures the
   * manager, NATS and Deno KV alone with it). @default {false}
   */
  noop?: boolean;
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
  /**
   * Stops gracefully: takes nothing new, lets running instances finish for up
   * to `graceMs` (default: the node's `graceMs` option), kills the rest, and
   * hands back to the manager what did not finish; then disconnects.
   */
  stop(graceMs?: number): Promise<void>;
}

/** One instance the node holds. */
interface Job {
  ref: InstanceRef;
  digest: string;
  run: RunSpec;
  proc?: InstanceProcess;
  killed?: string;
  /** Its run dir (private copy of the task root), made ahead of its turn (see `stage`). */
  staged?: Promise<RunDir>;
}

const PASS_ENV = ["PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "TZ", "TMPDIR", "SHELL"];

const keyOf = (r: InstanceRef) => `${r.taskId}/${r.index}/${r.attempt}`;

/**
 * Retries a JetStream publish for up to `totalMs` (a NATS server restarting,
 * a stream electing a leader), backing off.
 */
export async function publishRetrying<T>(fn: () => Promise<T>, totalMs = 30_000): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() + delay > deadline) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

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
  const name = options.name ??
    `${hostname().split(".")[0].replace(/[^A-Za-z0-9_-]/g, "-")}-${crypto.randomUUID().slice(0, 4)}`;
  if (!NodeName.safeParse(name).success) {
    throw new ValidationError(`Cannot start node '${name}' as a node name is 1-63 letters, digits, '_' or '-'`, {
      code: "invalid_node_name",
    });
  }
  const log = options.log.scope({ node: name });
  const slots = options.slots ?? navigator.hardwareConcurrency;
  const killGraceMs = options.killGraceMs ?? 1000;
  const resultIntervalMs = options.resultIntervalMs ?? 4;
  const runAs = options.runAs ? resolveRunAs(options.runAs) : null;
  const ownConnection = !options.nc;
  const nc = options.nc ?? await connectNode({
    natsUrl: options.natsUrl,
    name,
    workDir: options.workDir,
    joinToken: options.joinToken,
    credentials: options.credentials,
    tls: options.tls,
    version: VERSION,
    log,
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
  // The package cache is the node's alone; instances get copies. Runs may be passed through, not listed.
  await Deno.chmod(packagesDir, 0o700);
  await Deno.chmod(runsDir, 0o711);
  if (runAs) await checkReachable(runAs, runsDir);
  const cache = createPackageCache(packagesDir, openStore);
  const libc = loadLibc();
  const spawner = createSpawner({ libc, clock });
  const runDirs = createRunDirs({ dir: runsDir, libc, runAs, spare: 2 * slots + 2, log });
  log.debug("node:spawner", { kind: spawner.kind });
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

  /** Jobs waiting for a slot, by key, in the order they came (a Map keeps it). */
  const queue = new Map<string, Job>();
  const running = new Map<string, Job>();
  const unacked = new Map<string, Result>();
  const pendingResults: Result[] = [];
  let usedSlots = 0;
  let started = 0;
  let finished = 0;
  let heartbeatMs = 1000;
  let heartbeatTimer: TimerId | undefined;
  /** A retry of unacknowledged results is due then. */
  let flushTimer: TimerId | undefined;
  let flushQueued = false;
  let stopping = false;

  let baseEnv: Record<string, string> = {};
  for (const k of PASS_ENV) {
    const v = Deno.env.get(k);
    if (v !== undefined) baseEnv[k] = v;
  }
  if (runAs) baseEnv = userEnv(runAs, baseEnv);

  // -------------------------------------------------------------------------
  // Results

  /** Instances killed because the node stops: not reported, the manager requeues them. */
  const released = new Set<string>();
  const report = (result: Result) => {
    if (released.has(keyOf(result))) return;
    unacked.set(keyOf(result), result);
    pendingResults.push(result);
    finished++;
    // Unless a retry is due: then these wait for it.
    if (!flushQueued && flushTimer === undefined) {
      flushQueued = true;
      nextTurn(flush);
    }
  };

  /**
   * Sends pending results. One batch at a time is in flight: results that end
   * meanwhile wait for it to be acknowledged and travel together (Nagle's
   * rule: batching under load, no delay when idle). Two in flight cost the
   * manager and nats-server a fifth more CPU per instance in `bench/fanout.ts`.
   */
  let resultRequests = 0;
  let lastSentAt = -Infinity;
  function flush(): void {
    flushQueued = false;
    flushTimer = undefined;
    // While more instances run, batches go out at most every resultIntervalMs (the last one of a burst, and
    // a lone result on an idle node, go at once).
    const waitMs = lastSentAt + resultIntervalMs - clock.now();
    if (
      waitMs > 0 && pendingResults.length > 0 && resultRequests < 1 && !stopping &&
      (running.size > 1 || queue.size > 0)
    ) {
      flushTimer = clock.setTimeout(flush, waitMs);
      return;
    }
    while (pendingResults.length > 0 && resultRequests < 1) {
      lastSentAt = clock.now();
      const batch = pendingResults.splice(0, 500);
      resultRequests++;
      log.step("node.result");
      bus.request(taskResults(name), { node: name, results: batch }, { timeoutMs: 10_000 }).then(unwrap).then(
        () => {
          resultRequests--;
          for (const r of batch) unacked.delete(keyOf(r));
          if (pendingResults.length > 0 && flushTimer === undefined) flush();
        },
        (e) => {
          resultRequests--;
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

  /**
   * Gets a job's run dir (fetching the package once). It runs ahead of the
   * job's turn, while others run, so that a freed slot spawns at once.
   */
  const stage = (job: Job): Promise<RunDir> => {
    if (!job.staged) {
      job.staged = cache.root(job.digest as `sha256-${string}`, job.run.entrypoint).then((root) => runDirs.take(root));
      job.staged.catch(() => {}); // Reported when the job runs; a dropped job's failure does not matter.
    }
    return job.staged;
  };

  /** Forgets a job that will not run: its run dir, untouched, goes back. */
  const drop = (job: Job) => void job.staged?.then((runDir) => runDirs.release(runDir, true), () => {});

  const pump = () => {
    for (const [key, job] of queue) {
      if (stopping || usedSlots + Math.min(job.run.cpus, slots) > slots) break;
      queue.delete(key);
      usedSlots += Math.min(job.run.cpus, slots);
      running.set(keyOf(job.ref), job);
      void runJob(job).finally(() => {
        usedSlots -= Math.min(job.run.cpus, slots);
        running.delete(keyOf(job.ref));
        pump();
      });
    }
    // The next ones (one per slot) get their copies while these run.
    if (!options.noop && !stopping) {
      let n = 0;
      for (const job of queue.values()) {
        if (n++ >= slots) break;
        stage(job);
      }
    }
  };

  /** Stops an instance's process tree: SIGTERM now, SIGKILL after the grace period. */
  const killJob = (job: Job, why: string) => {
    // Its main process ended already: its exit stands (what it left behind is killed anyway).
    if (job.proc?.done) return;
    if (job.killed || !job.proc) {
      job.killed ??= why;
      return;
    }
    job.killed = why;
    const proc = job.proc;
    proc.kill("SIGTERM");
    const t = clock.setTimeout(() => proc.kill("SIGKILL"), killGraceMs);
    void proc.ended.finally(() => clock.clearTimeout(t));
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
      lost: false,
      outputBytes: 0,
      logBytes: 0,
      ...fields,
    });
    if (options.noop) return report(result({ exitCode: 0 }));
    let runDir: RunDir | undefined;
    let reusable = false;
    let instanceIo: InstanceIo | undefined;
    try {
      runDir = await stage(job);
      reusable = true;
      if (job.killed) return report(result({ error: job.killed }));
      const dir = runDir.dir;
      try {
        instanceIo = await prepareInstanceIo(io, ref, run, dir, runDir.outputDir);
      } catch (e) {
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
      const publishes: Promise<unknown>[] = [];
      let chunkNo = 0;
      let logBytes = 0;
      const subject = logSubject(ref.taskId, ref.index, name);
      const onOutput = async (chunk: Uint8Array, which: OutputStream) => {
        logBytes += chunk.byteLength;
        const h = headers();
        h.set("Parallelic-Attempt", String(ref.attempt));
        h.set("Parallelic-Stream", which);
        // The message id lets JetStream drop a duplicate when a retried publish had landed.
        const msgID = `${ref.taskId}.${ref.index}.${ref.attempt}.${chunkNo++}`;
        publishes.push(
          publishRetrying(() => js.publish(subject, chunk, { headers: h, msgID })).catch((e) => {
            log.warn("node:log-publish-failed", { taskId: ref.taskId, index: ref.index, error: String(e) });
          }),
        );
        if (publishes.length > 64) await Promise.all(publishes.splice(0));
      };
      reusable = false;
      try {
        const start = runAs
          ? asUser(runAs, join(dir, instanceIo.entrypoint), instanceIo.args)
          : { command: join(dir, instanceIo.entrypoint), args: instanceIo.args };
        log.step("node.spawn");
        job.proc = await spawner.start({
          ...start,
          cwd: join(dir, run.workdir),
          env,
          stdoutPath: runDir.stdoutPath,
          stderrPath: runDir.stderrPath,
          onOutput,
        });
      } catch (e) {
        return report(result({ error: `cannot start '${instanceIo.entrypoint}': ${(e as Error).message}` }));
      }
      started++;
      if (job.killed) killJob(job, job.killed);
      // A timer that fires after the main process ended kills nothing (killJob: proc.done).
      const timeout = run.timeoutMs === null
        ? undefined
        : clock.setTimeout(() => killJob(job, `timed out after ${run.timeoutMs} ms`), run.timeoutMs);
      const status = await job.proc.ended;
      log.step("node.ended");
      if (timeout !== undefined) clock.clearTimeout(timeout);
      await Promise.all(publishes);
      reusable = !job.killed && !status.leftovers && !instanceIo.finalize;
      // Outputs are stored before the result is sent: a result means its outputs are in the workspace.
      let outputBytes = 0;
      let error = job.killed ?? null;
      if (!stopping && !job.killed?.startsWith("stale")) {
        try {
          // Retried through a NATS restart or a stream leader election, like log chunks.
          outputBytes = await publishRetrying(() => instanceIo!.storeOutputs());
        } catch (e) {
          error ??= `could not store outputs from ${name}: ${(e as Error).message}`;
        }
      }
      report(result({
        exitCode: status.code,
        signal: status.signal,
        error,
        outputBytes,
        logBytes,
      }));
    } catch (e) {
      // The node's trouble (NATS, the package): requeued without using up a retry, a few times.
      report(result({ error: `node ${name} could not run it: ${(e as Error).message}`, lost: true }));
    } finally {
      await instanceIo?.cleanup();
      // Kept for another instance when untouched, else removed (meanwhile: the result is reported already).
      if (runDir) runDirs.release(runDir, reusable);
    }
  }

  // -------------------------------------------------------------------------
  // Messages

  bus.subscribe(nodeAssign(name), (msg: Assignment) => {
    log.step("node.assign");
    for (const t of msg.tasks) {
      for (const item of t.items) {
        const ref = { taskId: t.taskId, index: item.index, attempt: item.attempt };
        const key = keyOf(ref);
        // An assignment sent again (a manager restarted from a backup, a reconcile) is held once.
        if (running.has(key) || unacked.has(key) || queue.has(key)) continue;
        queue.set(key, { ref, digest: t.digest, run: t.run });
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
    for (const [key, job] of queue) {
      if (!matches(job.ref)) continue;
      queue.delete(key);
      drop(job);
    }
    for (const job of running.values()) if (matches(job.ref)) killJob(job, msg.reason);
    // A stale result nobody will accept need not be resent.
    for (const [k, r] of unacked) if (matches(r)) unacked.delete(k);
  }, { signal });

  const holding = (): InstanceRef[] => [
    ...[...queue.values()].map((j) => j.ref),
    ...[...running.values()].map((j) => j.ref),
    ...[...unacked.values()].map(({ taskId, index, attempt }) => ({ taskId, index, attempt })),
  ];

  const heartbeat = () => {
    heartbeatTimer = undefined;
    if (signal.aborted) return;
    try {
      bus.publish(nodeHeartbeat(name), { name, sentAt: clock.now(), usedSlots, holding: holding() });
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
            await bus.request(nodeRegister(name), {
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

  const metrics = new Metrics();
  metrics.gauge("parallelic_node_instances", "Instances this node holds, by state.", (g) => {
    g.set(running.size, { state: "running" });
    g.set(queue.size, { state: "queued" });
    g.set(unacked.size, { state: "unreported" });
  });
  metrics.gauge("parallelic_node_instances_started", "Instances this node started.", (g) => g.set(started));
  metrics.gauge("parallelic_node_instances_finished", "Instances this node finished.", (g) => g.set(finished));
  metrics.gauge(
    "parallelic_node_package_fetches",
    "Packages fetched from the object store.",
    (g) => g.set(cache.fetches),
  );
  metrics.gauge("parallelic_node_slots", "Slots: total and used.", (g) => {
    g.set(slots, { kind: "total" });
    g.set(usedSlots, { kind: "used" });
  });
  metrics.gauge(
    "parallelic_rejected_messages",
    "NATS messages dropped because they failed their schema.",
    (g) => g.set(bus.rejected),
  );
  const metricsServer = options.metricsPort === undefined ? undefined : Deno.serve(
    { port: options.metricsPort, hostname: "127.0.0.1", onListen: () => {} },
    (req) =>
      new URL(req.url).pathname === "/metrics"
        ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } })
        : new Response("not found", { status: 404 }),
  );

  return {
    name,
    registered,
    stats: () => ({
      started,
      finished,
      packageFetches: cache.fetches,
      dataFetches: io.data.fetches,
      running: running.size,
      queued: queue.size,
    }),
    async stop(graceMs = options.graceMs ?? 30_000) {
      if (stopping) return;
      stopping = true;
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      try {
        bus.publish(nodeLeaving(name), { name });
      } catch { /* not connected */ }
      // What never started goes back to the manager with the rest, at "left".
      queue.forEach(drop);
      queue.clear();
      const graceEnd = Date.now() + graceMs;
      while (running.size > 0 && Date.now() < graceEnd) await sleep(20);
      if (running.size > 0) log.warn("node:grace-over", { killing: running.size });
      for (const job of running.values()) {
        released.add(keyOf(job.ref));
        killJob(job, "node stopping");
      }
      const killEnd = Date.now() + killGraceMs + 2000;
      while (running.size > 0 && Date.now() < killEnd) await sleep(20);
      // Every result must be acknowledged before the manager hears that we left.
      if (flushTimer !== undefined) clock.clearTimeout(flushTimer);
      flush();
      const ackEnd = Date.now() + 5000;
      while (unacked.size > 0 && Date.now() < ackEnd) {
        await sleep(50);
        if (resultRequests === 0 && pendingResults.length > 0) flush();
      }
      try {
        unwrap(await bus.request(nodeLeft(name), { name }, { timeoutMs: 3000 }));
        log.info("node:left", { unacknowledged: unacked.size });
      } catch (e) {
        log.warn("node:leave-unacknowledged", { error: (e as Error).message });
      }
      abort.abort();
      await metricsServer?.shutdown();
      if (heartbeatTimer !== undefined) clock.clearTimeout(heartbeatTimer);
      if (flushTimer !== undefined) clock.clearTimeout(flushTimer);
      await registering?.catch(() => {});
      if (ownConnection) await nc.drain().catch(() => {});
    },
  };
}
