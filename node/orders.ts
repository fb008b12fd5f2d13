/**
 * What the node does with the manager's orders on its own subjects: run
 * these instances (`assign`, refused here when its spec would run outside
 * its task root), stop being given work or take it again (`drain`), stop
 * these instances (`kill`). And what it holds, as its heartbeats list it.
 *
 * @module
 */
import type { Bus } from "../core/bus.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { type Assignment, type InstanceRef, nodeAssign, nodeDrain, nodeKill } from "../core/schema.ts";
import { runSpecProblem } from "../core/task_toml.ts";
import { type JobQueue, keyOf, refsOf } from "./queue.ts";
import { resultOf, type ResultSender } from "./results.ts";
import type { Runner } from "./runner.ts";

/** What the node's order handlers share with the rest of the node. */
export interface NodeOrdersDeps {
  bus: Bus;
  /** The node's name. */
  name: string;
  clock: Clock;
  log: Logger;
  /** Ends the subscriptions. */
  signal: AbortSignal;
  queue: JobQueue;
  runner: Runner;
  results: ResultSender;
  /**
   * What a stopping node dropped or killed without a result: still its own until the manager hears "left" (which
   * requeues it), so heartbeats go on listing it; else the manager would requeue it first as forgotten.
   */
  handingBack: Map<string, InstanceRef>;
  /** Drained by an operator: the node starts nothing more. Set here, read by the queue. */
  state: { drained: boolean };
}

/** Subscribes to the node's assign, drain and kill orders until `signal` aborts. */
export function followOrders(deps: NodeOrdersDeps): void {
  const { bus, name, clock, log, signal, queue, runner, results, handingBack, state } = deps;
  const { waiting, running } = queue;
  const { unacked } = results;

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
            results.report(resultOf(r, { endedAt: clock.now(), error: `refused by node ${name}: ${problem}` }));
          }
        } else waiting.set(key, { ref, more, digest: t.digest, run: t.run });
      }
    }
    if (state.drained) handBack();
    queue.pump();
  }, { signal });

  /** Sends what waits for a slot back to the manager unstarted, as lost (no retry used up): it runs elsewhere. */
  function handBack() {
    for (const [key, job] of waiting) {
      waiting.delete(key);
      runner.drop(job);
      // A chunk goes back whole: each of its instances is requeued.
      for (const ref of refsOf(job)) {
        results.report(
          resultOf(ref, { endedAt: clock.now(), error: `not started: node ${name} was drained`, lost: true }),
        );
      }
    }
  }

  bus.subscribe(nodeDrain(name), (msg) => {
    state.drained = msg.drain;
    log.info(state.drained ? "node:drained" : "node:resumed", { handingBack: state.drained ? waiting.size : 0 });
    if (state.drained) handBack();
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
}

/** What the node holds: waiting, running, unacknowledged or being handed back, each instance once. */
export function heldInstances(
  queue: JobQueue,
  results: ResultSender,
  handingBack: Map<string, InstanceRef>,
): InstanceRef[] {
  // Once each: a killed instance is running and handed back until it exits.
  const all = new Map(handingBack);
  for (const j of [...queue.waiting.values(), ...queue.running.values()]) {
    for (const r of refsOf(j)) all.set(keyOf(r), r);
  }
  for (const [k, { taskId, index, attempt }] of results.unacked) all.set(k, { taskId, index, attempt });
  return [...all.values()];
}
