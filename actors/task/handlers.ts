/**
 * The task actor's other messages: cancels, result batches from nodes, node
 * events (joined, updated, lost, left) and heartbeats.
 *
 * @module
 */
import { NotFoundError } from "../../core/errors.ts";
import {
  type Heartbeat,
  nodeHeartbeatAll,
  type NodeRecord,
  nodesEvent,
  taskCancel,
  type TaskRecord,
  taskResultsAll,
} from "../../core/schema.ts";
import { taskKey } from "../../core/kv.ts";
import { accept, cancelTask, reconcile, requeueFlight } from "./lifecycle.ts";
import type { TaskState } from "./state.ts";

/** Adds a node the scheduler did not know, or updates its record. */
export const upsertNode = (s: TaskState, rec: NodeRecord) => {
  const seat = s.nodes.get(rec.name);
  if (seat) seat.rec = rec;
  else s.nodes.set(rec.name, { rec, usedSlots: 0, usedMemory: 0, usedGpus: 0, flights: new Set(), avgRunMs: null });
  s.kick();
};

/** Resolves once the next commit is stored. */
const nextCommit = (s: TaskState) => new Promise<void>((resolve) => s.pending.afterCommit.push(resolve));

/** Serves cancels and result batches, and follows node events and heartbeats. */
export function serveMessages(s: TaskState): void {
  const { bus, kv, log, signal } = s;

  bus.serve(taskCancel, async (req) => {
    const live = s.tasks.get(req.taskId);
    if (!live) {
      const stored = await kv.get<TaskRecord>(taskKey(req.taskId));
      if (!stored.value) {
        throw new NotFoundError(`Cannot cancel task '${req.taskId}' as it does not exist`, { code: "task_not_found" });
      }
      return { ok: true as const, state: stored.value.state };
    }
    cancelTask(s, live, req.by);
    const result = nextCommit(s);
    s.kick();
    await result;
    return { ok: true as const, state: "cancelled" as const };
  }, { signal });

  bus.serve(taskResultsAll, (batch, _subject, reply) => {
    log.step("task.results");
    let accepted = 0;
    let ignored = 0;
    for (const r of batch.results) {
      if (accept(s, batch.node, r)) accepted++;
      else ignored++;
    }
    s.stats.results += accepted;
    s.stats.ignored += ignored;
    if (ignored > 0) log.debug("task:results-ignored", { node: batch.node, ignored });
    const answer = { ok: true as const, accepted, ignored };
    // Told as soon as they are stored: in the commit's turn, so in one write with its assignments.
    const stored = new Promise<typeof answer>((resolve) =>
      s.pending.afterCommit.push(() => {
        resolve(answer);
        reply(answer);
      })
    );
    s.kick();
    return stored;
  }, { signal });

  bus.subscribe(nodesEvent, (event) => {
    upsertNode(s, event.node);
    if (event.kind === "lost" || event.kind === "left") {
      const seat = s.nodes.get(event.node.name)!;
      const flights = [...seat.flights];
      const why = event.kind === "lost" ? "lost (no heartbeat for its lease)" : "left (stopped before it finished)";
      for (const f of flights) requeueFlight(s, f, `node ${event.node.name} ${why}`);
      if (flights.length) log.warn("task:node-lost-requeued", { node: event.node.name, instances: flights.length });
      s.kick();
    }
  }, { signal });

  bus.subscribe(nodeHeartbeatAll, (hb: Heartbeat) => reconcile(s, hb), { signal });
}
