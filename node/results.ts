/**
 * Results on their way to the manager: batched (one request in flight, the
 * rest gather meanwhile), kept until acknowledged, resent after a failure
 * (fencing makes resending safe).
 *
 * @module
 */
import { type Bus, unwrap } from "../core/bus.ts";
import { type Clock, nextTurn, type TimerId } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { type InstanceRef, type Result, taskResults } from "../core/schema.ts";
import { keyOf } from "./queue.ts";

/** What the sender needs. */
export interface ResultSenderDeps {
  bus: Bus;
  /** The node's name. */
  name: string;
  clock: Clock;
  log: Logger;
  /** Least time between two batches while others run or wait (see `NodeOptions.resultIntervalMs`). */
  resultIntervalMs: number;
  /** True while more results are coming soon (others run or wait): then a batch may wait to gather more. */
  busy(): boolean;
  /** True once the node stops. */
  stopping(): boolean;
}

/** The sender of {@linkcode createResultSender}. */
export interface ResultSender {
  /** Queues a result to send (unless its instance was released). */
  report(result: Result): void;
  /** Results sent or to send, not yet acknowledged, by key. */
  readonly unacked: Map<string, Result>;
  /** Instances killed because the node stops: not reported, the manager requeues them. */
  release(key: string): void;
  /** Results reported so far. */
  finished(): number;
  /** Sends what is pending now, without waiting for the batch interval. */
  flushNow(): void;
  /** Sends what is pending if no batch is in flight. */
  flushIfIdle(): void;
  /** Stops the timer. */
  stop(): void;
}

/**
 * The result of an attempt, from what is known of it (`fields`); the rest
 * says nothing ran: no exit, no start, no usage, no outputs.
 */
export function resultOf(ref: InstanceRef, fields: Partial<Result> & Pick<Result, "endedAt">): Result {
  return {
    ...ref,
    exitCode: null,
    signal: null,
    startedAt: null,
    error: null,
    lost: false,
    outputBytes: 0,
    logBytes: 0,
    cpuMs: 0,
    maxRssBytes: 0,
    ...fields,
  };
}

/** Creates the node's result sender. */
export function createResultSender(deps: ResultSenderDeps): ResultSender {
  const { bus, name, clock, log } = deps;
  const unacked = new Map<string, Result>();
  const pendingResults: Result[] = [];
  const released = new Set<string>();
  let finished = 0;
  /** A retry of unacknowledged results is due then. */
  let flushTimer: TimerId | undefined;
  let flushQueued = false;

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
   * rule: batching under load, no delay when idle); two in flight cost the
   * manager and nats-server more CPU per instance.
   */
  let resultRequests = 0;
  let lastSentAt = -Infinity;
  function flush(): void {
    flushQueued = false;
    flushTimer = undefined;
    // While more instances run, batches go out at most every resultIntervalMs (the last one of a burst, and
    // a lone result on an idle node, go at once).
    const waitMs = lastSentAt + deps.resultIntervalMs - clock.now();
    if (waitMs > 0 && pendingResults.length > 0 && resultRequests < 1 && !deps.stopping() && deps.busy()) {
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
          if (!deps.stopping() && flushTimer === undefined) flushTimer = clock.setTimeout(flush, 1000);
        },
      );
    }
  }

  return {
    report,
    unacked,
    release: (key) => void released.add(key),
    finished: () => finished,
    flushNow() {
      if (flushTimer !== undefined) clock.clearTimeout(flushTimer);
      flush();
    },
    flushIfIdle() {
      if (resultRequests === 0 && pendingResults.length > 0) flush();
    },
    stop() {
      if (flushTimer !== undefined) clock.clearTimeout(flushTimer);
    },
  };
}
