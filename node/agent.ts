/**
 * The compute node: joins a manager over NATS, runs the instances assigned
 * to it (bounded by its slots), streams their logs into the log stream,
 * gives them the data sets they name and stores their outputs (see
 * `instance_io.ts`), and reports their results in acknowledged batches.
 *
 * This file wires the parts: `queue.ts` (the local queue and its slots),
 * `orders.ts` (assign, drain and kill orders from the manager), `runner.ts`
 * (one instance, from run dir to result), `results.ts`
 * (batching and resending results), `presence.ts` (registration and
 * heartbeats), `work_dir.ts` (the work dir and its caches, made ready at
 * start), `node_metrics.ts` (the node's own metrics), `shutdown.ts` (how
 * it stops).
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { hostname } from "node:os";
import { join } from "node:path";
import { createBus } from "../core/bus.ts";
import { nodeInboxPrefix } from "../core/nats_auth.ts";
import { lockDir } from "../core/dir_lock.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { NatsCredentials, NatsTls } from "../core/nats_connect.ts";
import { type InstanceRef, NodeName, nodeRejoin } from "../core/schema.ts";
import { killLeftovers } from "./leftovers.ts";
import { connectNode } from "./join.ts";
import { resolveRunAs } from "./run_as.ts";
import { resolveRunAsRange } from "./task_users.ts";
import { createJobQueue } from "./queue.ts";
import { createLogSender } from "./log_sender.ts";
import { createResultSender } from "./results.ts";
import { createRunner } from "./runner.ts";
import { hostUsageReader } from "./host_usage.ts";
import { createPresence } from "./presence.ts";
import { openResources } from "./limits.ts";
import { nodeMetrics, serveMetrics } from "./node_metrics.ts";
import { followOrders, heldInstances } from "./orders.ts";
import { stopNode } from "./shutdown.ts";
import { prepareWorkDir } from "./work_dir.ts";
import { VERSION } from "../core/version.ts";

export { VERSION } from "../core/version.ts";

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

  const state = { stopping: false, drained: false };
  const isStopping = () => state.stopping;
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
    // Drained by an operator, the node starts nothing more either (see `orders.ts`).
    stopping: () => state.stopping || state.drained,
  });
  const handingBack = new Map<string, InstanceRef>();
  followOrders({ bus, name, clock, log, signal, queue, runner, results, handingBack, state });

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
    holding: () => heldInstances(queue, results, handingBack),
    usedSlots: queue.usedSlots,
    hostUsage: hostUsageReader(),
    stopping: isStopping,
  });

  bus.subscribe(nodeRejoin(name), (msg) => {
    log.warn("node:rejoin", { reason: msg.reason });
    void presence.register();
  }, { signal });

  const registered = presence.register();

  const metrics = nodeMetrics(bus, cache, slots, {
    running: () => queue.running.size,
    queued: () => queue.waiting.size,
    unreported: () => results.unacked.size,
    started: runner.started,
    finished: results.finished,
    usedSlots: queue.usedSlots,
  });
  const metricsServer = options.metricsPort === undefined ? undefined : serveMetrics(options.metricsPort, metrics);

  return {
    name,
    registered,
    stats: () => ({
      started: runner.started(),
      finished: results.finished(),
      packageFetches: cache.fetches,
      dataFetches: io.data.fetches,
      running: queue.running.size,
      queued: queue.waiting.size,
    }),
    async stop(graceMs = options.graceMs ?? 30_000) {
      if (state.stopping) return;
      state.stopping = true;
      await stopNode({
        bus,
        name,
        log,
        queue,
        runner,
        results,
        handingBack,
        killGraceMs,
        taskUsers,
        abort,
        metricsServer,
        presence,
        logs,
        resources,
        ownConnection: ownConnection ? nc : null,
        dirLock,
      }, graceMs);
    },
  };
}
