/**
 * Why a task or instance is where it is, in words: where an instance runs,
 * how long it backs off, or why queued instances are not placed.
 *
 * @module
 */
import { NotFoundError } from "../../core/errors.ts";
import { AVOID_AFTER_FAILURES, type InstanceRecord, taskExplain, type TaskRecord } from "../../core/schema.ts";
import { instanceKey, taskKey } from "../../core/kv.ts";
import { avoidedNodes, better, gib, nodeCanEverFit, prefetchOf, throttleRoom, whyNoNodeFits } from "./placement.ts";
import { fairShare, type Live, type NodeSeat, type TaskState } from "./state.ts";

/** Serves explain requests. */
export function serveExplain(s: TaskState): void {
  const { kv, clock } = s;
  s.bus.serve(taskExplain, async (req) => {
    const live = s.tasks.get(req.taskId);
    if (!live) {
      const stored = (await kv.get<TaskRecord>(taskKey(req.taskId))).value;
      if (!stored) throw new NotFoundError(`Task '${req.taskId}' does not exist`, { code: "task_not_found" });
      const rec = req.index === undefined
        ? null
        : (await kv.get<InstanceRecord>(instanceKey(req.taskId, req.index))).value;
      if (rec) return endedInstance(rec);
      return {
        ok: true as const,
        state: stored.state,
        explanation: `The task ended ${stored.state}${stored.reason ? `: ${stored.reason}` : "."}${
          stored.hint ? ` Hint: ${stored.hint}.` : ""
        }`,
      };
    }
    if (req.index !== undefined) {
      const flight = live.flights.get(req.index);
      if (flight) {
        return {
          ok: true as const,
          state: "running" as const,
          explanation: `Instance ${req.index} runs on node ${flight.node} (attempt ${flight.rec.attempt}).`,
        };
      }
      const retry = live.retry.find((r) => r.index === req.index);
      if (retry?.notBefore && retry.notBefore > clock.now()) {
        return {
          ok: true as const,
          state: "queued" as const,
          explanation: `Instance ${req.index} waits to retry (attempt ${retry.attempt}) until ${
            new Date(retry.notBefore).toISOString()
          }, backing off after a failure.`,
        };
      }
      if (!retry && req.index < live.rec.nextIndex) {
        const rec = (await kv.get<InstanceRecord>(instanceKey(live.rec.id, req.index))).value;
        if (rec) return endedInstance(rec);
      }
    }
    return { ok: true as const, state: live.rec.state, explanation: explainQueue(s, live) };
  }, { signal: s.signal });
}

/** How an instance ended, with the hint its last attempt brought. */
function endedInstance(rec: InstanceRecord) {
  const hint = rec.history.at(-1)?.hint;
  return {
    ok: true as const,
    state: rec.state,
    explanation: `Instance ${rec.index} ended ${rec.state}.${hint ? ` It ${hint}.` : ""}`,
  };
}

/**
 * Why a task's queued instances are not placed when every ready node that fits (`fits`) avoids it: which nodes, and
 * what follows (see `endIfAvoidedEverywhere` in `lifecycle.ts`).
 */
function avoidedByAll(live: Live, fits: NodeSeat[]): string {
  const names = fits.map((n) => `${n.rec.name} (${live.rec.nodeFailures[n.rec.name]} failed)`).join(", ");
  return `${live.rec.counts.queued} instances cannot be placed: every ready node that fits the task failed ` +
    `${AVOID_AFTER_FAILURES} or more of its attempts and none succeeded there: ${names}. It ends failed once its ` +
    `${live.flights.size} running instances end, unless one of them succeeds; then fix the cause and rerun it ` +
    `(parallelic rerun ${live.rec.id}): a rerun clears this.`;
}

/** Says, in words, why a task's queued instances are not placed. */
export function explainQueue(s: TaskState, live: Live): string {
  const spec = live.rec.spec;
  const queued = live.rec.counts.queued;
  if (live.rec.waitingOn?.length) {
    const when = spec.after?.when === "ended" ? "end" : "succeed";
    const on = live.rec.waitingOn.map((id) => {
      const up = s.tasks.get(id)?.rec;
      return up ? `${id} (${up.state}, ${up.counts.succeeded + up.counts.failed} of ${up.spec.instances} done)` : id;
    });
    return `Waits for task ${
      on.join(", ")
    } to ${when} ([after]): none of its ${spec.instances} instances starts before.`;
  }
  if (queued === 0) return `All ${live.rec.counts.running} unfinished instances are running.`;
  if (live.rec.held) {
    return `The task is held: none of its ${queued} queued instances is dispatched (${live.rec.counts.running} ` +
      `running go on); release it: parallelic release ${live.rec.id}`;
  }
  if (throttleRoom(live) === 0) {
    return `${queued} instances wait for [limits] max_running = ${spec.maxRunning}: ${live.flights.size} instances ` +
      "are running or sent to nodes.";
  }
  const all = [...s.nodes.values()];
  if (all.length === 0) return "No node has joined: start one with 'deno task node --nats=nats://HOST:4222'.";
  const ready = all.filter((n) => n.rec.state === "ready");
  const list = (fn: (n: NodeSeat) => string, seats = ready) => seats.map((n) => `${n.rec.name}: ${fn(n)}`).join(", ");
  if (ready.length === 0) return `No node is ready (nodes: ${list((n) => n.rec.state, all)}).`;
  const failed = whyNoNodeFits(spec, ready.map((n) => n.rec));
  if (failed.length > 0) return `${queued} instances cannot be placed: ${failed.join("; ")}.`;
  const avoided = avoidedNodes(live.rec);
  const fits = ready.filter((n) => nodeCanEverFit(n.rec, spec));
  const fitting = fits.filter((n) => !avoided.has(n.rec.name));
  const avoiding = avoided.size > 0
    ? `; nodes ${[...avoided].join(", ")} take no more of it after ${AVOID_AFTER_FAILURES} failed attempts ` +
      `each (a rerun clears this)`
    : "";
  if (fitting.length === 0 && fits.length > 0) return avoidedByAll(live, fits);
  if (fitting.length === 0) {
    return `${queued} instances cannot be placed: no single node meets every requirement (cpus ${spec.cpus}, memory ${
      gib(spec.memoryBytes)
    }, gpus ${spec.gpus}, labels ${JSON.stringify(spec.labels)})${avoiding}.`;
  }
  const ahead = [...s.tasks.values()].filter((t) =>
    t !== live && t.rec.counts.queued > 0 && !better(live, t, fairShare(s))
  )
    .reduce((n, t) => n + t.rec.counts.queued, 0);
  const waiting = live.retry.filter((r) => (r.notBefore ?? 0) > s.clock.now()).length;
  return `${queued} instances wait for free slots on the ${fitting.length} nodes that fit (${
    list((n) => `${n.usedSlots}/${n.rec.slots * (1 + prefetchOf(n, s.settings))} held`, fitting)
  })${ahead ? `; ${ahead} instances of tasks with higher or equal priority are ahead` : ""}${
    waiting ? `; ${waiting} wait for a retry backoff` : ""
  }${avoiding}.`;
}
