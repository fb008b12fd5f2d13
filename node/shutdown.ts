/**
 * How a node stops: it says it is leaving, lets what runs finish for its
 * grace period, kills the rest and hands it back, waits until every result
 * it sent is acknowledged, says it left, then closes what it opened.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { type Bus, unwrap } from "../core/bus.ts";
import type { Logger } from "../core/log.ts";
import { type InstanceRef, nodeLeaving, nodeLeft } from "../core/schema.ts";
import type { LogSender } from "./log_sender.ts";
import type { NodeResources } from "./limits.ts";
import type { Presence } from "./presence.ts";
import { type JobQueue, keyOf, refsOf } from "./queue.ts";
import type { ResultSender } from "./results.ts";
import type { Runner } from "./runner.ts";
import type { TaskUsers } from "./task_users.ts";

/** What a node closes when it stops, in the order it does. */
export interface NodeParts {
  bus: Bus;
  /** The node's name. */
  name: string;
  log: Logger;
  queue: JobQueue;
  runner: Runner;
  results: ResultSender;
  /** What the node hands back at "left" (see `orders.ts`). */
  handingBack: Map<string, InstanceRef>;
  /** Kill grace: SIGTERM, then SIGKILL after this long. */
  killGraceMs: number;
  taskUsers: TaskUsers | null;
  /** Ends the node's subscriptions. */
  abort: AbortController;
  metricsServer: Deno.HttpServer | undefined;
  presence: Presence;
  logs: LogSender;
  resources: NodeResources;
  /** The connection, when the node opened it (else it is the caller's to close). */
  ownConnection: NatsConnection | null;
  /** The work dir's lock. */
  dirLock: { release(): void };
}

/** Stops a node gracefully within `graceMs` (see `ComputeNode.stop`). */
export async function stopNode(parts: NodeParts, graceMs: number): Promise<void> {
  const { bus, name, log, runner, results, handingBack, killGraceMs } = parts;
  const { waiting, running } = parts.queue;
  const { unacked } = results;
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
  await parts.taskUsers?.settled();
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
  parts.abort.abort();
  await parts.metricsServer?.shutdown();
  const presenceStopped = parts.presence.stop();
  results.stop();
  parts.logs.stop();
  await presenceStopped;
  await parts.resources.close();
  if (parts.ownConnection) await parts.ownConnection.drain().catch(() => {});
  parts.dirLock.release();
}
