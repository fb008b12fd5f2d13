/**
 * The compute node: joins a manager over NATS, runs the instances assigned
 * to it (bounded by its slots), streams their logs into the log stream,
 * gives them the data sets they name and stores their outputs (see
 * `instance_io.ts`), and reports their results in acknowledged batches.
 *
 * This file wires the parts: `queue.ts` (the local queue and its slots),
 * `runner.ts` (one instance, from run dir to result), `results.ts`
 * (batching and resending results), `presence.ts` (registration and
 * heartbeats), `work_dir.ts` (the work dir and its caches, made ready at
 * start), `node_metrics.ts` (the node's own metrics).
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { hostname } from "node:os";
import { join } from "node:path";
import { createBus, unwrap } from "../core/bus.ts";
import { nodeInboxPrefix } from "../core/nats_auth.ts";
import { lockDir } from "../core/dir_lock.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { ValidationError } from "../core/errors.ts";
import { runSpecProblem } from "../core/task_toml.ts";
import type { Logger } from "../core/log.ts";
import type { NatsCredentials, NatsTls } from "../core/nats_connect.ts";
import {
  type Assignment,
  type InstanceRef,
  nodeAssign,
  nodeDrain,
  nodeKill,
  nodeLeaving,
  nodeLeft,
  NodeName,
  nodeRejoin,
} from "../core/schema.ts";
import { killLeftovers } from "./leftovers.ts";
import { connectNode } from "./join.ts";
import { resolveRunAs } from "./run_as.ts";
import { resolveRunAsRange } from "./task_users.ts";
import { createJobQueue, keyOf, refsOf } from "./queue.ts";
import { createLogSender } from "./log_sender.ts";
import { createResultSender } from "./results.ts";
import { createRunner } from "./runner.ts";
import { createPresence } from "./presence.ts";
import { openResources } from "./limits.ts";
import { nodeMetrics } from "./node_metrics.ts";
import { prepareWorkDir } from "./work_dir.ts";

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
  /** GPUs offered (devices 0 to N-1). @default {listed with nvidia-smi, none without} */
  gpus?: number;
  /** Hold memory by watching RSS even where a cgroup could hold it (tests). @default {false} */
  noCgroups?: boolean;
  /** Most bytes of data sets and unpacked packages kept in the node's cache (`--cache-size`). @default {10 GiB} */
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
   * Run each task's instances as a uid of its own from this range
   * (`20000-29999`; the node must run as root; see `node/task_users.ts`).
   */
  runAsRange?: string;
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
  const range = options.runAsRange === undefined
    ? null
    : resolveRunAsRange(options.runAsRange, { runAs: options.runAs });
  const runAs = options.runAs ? resolveRunAs(options.runAs) : null;
  // Before joining: a second node on this work dir would clear the first one's runs.
  const dirLock = await lockDir(options.workDir, "work dir", "--work-dir");
  // A run killed outright may have left instances running (which a cancel would not reach): they go first.
  await killLeftovers(join(options.workDir, "pids"), join(options.workDir, "runs"), log);
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
  }).catch((e) => {
    dirLock.release();
    throw e;
  });
  const bus = createBus(nc, log, { inbox: nodeInboxPrefix(name) });
  const abort = new AbortController();
  const signal = abort.signal;
  const { cache, spawner, runDirs, io, taskUsers } = await prepareWorkDir(
    options,
    bus,
    name,
    slots,
    {
      runAs,
      range,
      onFree: () => queue.pump(),
    },
    clock,
    log,
  );
  const resources = await openResources({ node: name, clock, log, gpus: options.gpus, noCgroups: options.noCgroups });

  let stopping = false;
  let drained = false;
  const isStopping = () => stopping;
  const results = createResultSender({
    bus,
    name,
    clock,
    log,
    resultIntervalMs: options.resultIntervalMs ?? 4,
    busy: () => queue.running.size > 1 || queue.waiting.size > 0,
    stopping: isStopping,
  });
  const logs = createLogSender({ bus, name, clock, log });
  const runner = createRunner({
    name,
    clock,
    log,
    logs,
    io,
    cache,
    runDirs,
    spawner,
    runAs,
    taskUsers,
    resources,
    killGraceMs,
    noop: options.noop ?? false,
    report: results.report,
  });
  const queue = createJobQueue({
    slots,
    run: runner.run,
    stage: options.noop ? null : runner.stage,
    fits: (job) => resources.fits(job.run),
    // Drained by an operator, the node starts nothing more either (see `handBack`).
    stopping: () => stopping || drained,
  });
  const { waiting, running } = queue;
  const { unacked } = results;
  /**
   * What a stopping node dropped or killed without a result: still its own until the manager hears "left" (which
   * requeues it), so heartbeats go on listing it; else the manager would requeue it first as forgotten.
   */
  const handingBack = new Map<string, InstanceRef>();

  // -------------------------------------------------------------------------
  // Messages

  bus.subscribe(nodeAssign(name), (msg: Assignment) => {
    log.step("node.assign");
    for (const t of msg.tasks) {
      // Checked again as the gateway checked it: a spec that would run outside its task root is not run.
      const problem = runSpecProblem(t.run);
      for (let i = 0; i < t.items.length;) {
        // A chunk: this item and the next `chunk - 1` run in one process.
        const size = t.items[i].chunk ?? 1;
        const [ref, ...more] = t.items.slice(i, i += size).map((item) => ({
          taskId: t.taskId,
          index: item.index,
          attempt: item.attempt,
        }));
        const key = keyOf(ref);
        // An assignment sent again (a manager restarted from a backup, a reconcile) is held once.
        if (running.has(key) || unacked.has(key) || waiting.has(key)) continue;
        if (problem) {
          log.warn("node:spec-refused", { taskId: t.taskId, index: ref.index, problem });
          for (const r of [ref, ...more]) {
            results.report({
              ...r,
              exitCode: null,
              signal: null,
              startedAt: null,
              endedAt: clock.now(),
              error: `refused by node ${name}: ${problem}`,
              lost: false,
              outputBytes: 0,
              logBytes: 0,
              cpuMs: 0,
              maxRssBytes: 0,
            });
          }
        } else waiting.set(key, { ref, more, digest: t.digest, run: t.run });
      }
    }
    if (drained) handBack();
    queue.pump();
  }, { signal });

  /** Sends what waits for a slot back to the manager unstarted, as lost (no retry used up): it runs elsewhere. */
  function handBack() {
    for (const [key, job] of waiting) {
      waiting.delete(key);
      runner.drop(job);
      // A chunk goes back whole: each of its instances is requeued.
      for (const ref of refsOf(job)) {
        results.report({
          ...ref,
          exitCode: null,
          signal: null,
          startedAt: null,
          endedAt: clock.now(),
          error: `not started: node ${name} was drained`,
          lost: true,
          outputBytes: 0,
          logBytes: 0,
          cpuMs: 0,
          maxRssBytes: 0,
        });
      }
    }
  }

  bus.subscribe(nodeDrain(name), (msg) => {
    drained = msg.drain;
    log.info(drained ? "node:drained" : "node:resumed", { handingBack: drained ? waiting.size : 0 });
    if (drained) handBack();
    else queue.pump();
  }, { signal });

  bus.subscribe(nodeKill(name), (msg) => {
    const matches = (ref: InstanceRef) =>
      msg.items.some((k) =>
        k.taskId === ref.taskId && (k.index === undefined || k.index === ref.index) &&
        (k.attempt === undefined || k.attempt === ref.attempt)
      );
    // Stopping one instance of a chunk stops its process: the chunk's exit applies to all of it.
    for (const [key, job] of waiting) {
      if (!refsOf(job).some(matches)) continue;
      waiting.delete(key);
      runner.drop(job);
    }
    for (const job of running.values()) if (refsOf(job).some(matches)) runner.kill(job, msg.reason);
    // A stale result nobody will accept need not be resent.
    for (const [k, r] of unacked) if (matches(r)) unacked.delete(k);
    for (const [k, ref] of handingBack) if (matches(ref)) handingBack.delete(k);
  }, { signal });

  const holding = (): InstanceRef[] => {
    // Once each: a killed instance is running and handed back until it exits.
    const all = new Map(handingBack);
    for (const j of [...waiting.values(), ...running.values()]) for (const r of refsOf(j)) all.set(keyOf(r), r);
    for (const [k, { taskId, index, attempt }] of unacked) all.set(k, { taskId, index, attempt });
    return [...all.values()];
  };

  const presence = createPresence({
    bus,
    name,
    clock,
    log,
    signal,
    offer: () => ({
      slots,
      memoryBytes: options.memoryBytes ?? Deno.systemMemoryInfo().total,
      gpus: resources.gpus,
      gpuDevices: resources.gpuDevices,
      limits: resources.limits,
      labels: options.labels ?? {},
      version: VERSION,
    }),
    holding,
    usedSlots: queue.usedSlots,
    stopping: isStopping,
  });

  bus.subscribe(nodeRejoin(name), (msg) => {
    log.warn("node:rejoin", { reason: msg.reason });
    void presence.register();
  }, { signal });

  const registered = presence.register();

  const metrics = nodeMetrics(bus, cache, slots, {
    running: () => running.size,
    queued: () => waiting.size,
    unreported: () => unacked.size,
    started: runner.started,
    finished: results.finished,
    usedSlots: queue.usedSlots,
  });
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
      started: runner.started(),
      finished: results.finished(),
      packageFetches: cache.fetches,
      dataFetches: io.data.fetches,
      running: running.size,
      queued: waiting.size,
    }),
    async stop(graceMs = options.graceMs ?? 30_000) {
      if (stopping) return;
      stopping = true;
      const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
      try {
        bus.publish(nodeLeaving(name), { name });
      } catch { /* not connected */ }
      // What never started goes back to the manager with the rest, at "left".
      for (const job of waiting.values()) for (const ref of refsOf(job)) handingBack.set(keyOf(ref), ref);
      waiting.forEach(runner.drop);
      waiting.clear();
      const graceEnd = Date.now() + graceMs;
      while (running.size > 0 && Date.now() < graceEnd) await sleep(20);
      if (running.size > 0) log.warn("node:grace-over", { killing: running.size });
      for (const job of running.values()) {
        for (const ref of refsOf(job)) {
          handingBack.set(keyOf(ref), ref);
          results.release(keyOf(ref));
        }
        runner.kill(job, "node stopping");
      }
      const killEnd = Date.now() + killGraceMs + 2000;
      while (running.size > 0 && Date.now() < killEnd) await sleep(20);
      // Task uids given back: what runs as them killed, their folders removed.
      await taskUsers?.settled();
      // Every result must be acknowledged before the manager hears that we left.
      results.flushNow();
      const ackEnd = Date.now() + 5000;
      while (unacked.size > 0 && Date.now() < ackEnd) {
        await sleep(50);
        results.flushIfIdle();
      }
      try {
        unwrap(await bus.request(nodeLeft(name), { name }, { timeoutMs: 3000 }));
        log.info("node:left", { unacknowledged: unacked.size });
      } catch (e) {
        log.warn("node:leave-unacknowledged", { error: (e as Error).message });
      }
      abort.abort();
      await metricsServer?.shutdown();
      const presenceStopped = presence.stop();
      results.stop();
      logs.stop();
      await presenceStopped;
      await resources.close();
      if (ownConnection) await nc.drain().catch(() => {});
      dirLock.release();
    },
  };
}
