/**
 * The task actor: owns every task and instance. It accepts submissions,
 * places instances on nodes in batches, records results in batches, retries,
 * requeues what lost nodes held, and cancels.
 *
 * Design for 10,000-instance tasks:
 * - a queued instance costs nothing: a task keeps a cursor (`nextIndex`) and
 *   a short retry queue, so a million queued instances are one record;
 * - a first attempt is stored as part of a span (instances `from` to `to - 1`
 *   sent to one node in one cycle: one write); an instance record is written
 *   when it ends (or is requeued, or a retry is dispatched); all writes of a
 *   cycle are coalesced into few Deno KV atomics;
 * - assignments go out as one message per node per cycle, results come in
 *   batches and are acknowledged once stored;
 * - per-state counts live in the task record: status reads never scan.
 *
 * `[finalize]` runs as one extra instance, numbered `instances`, queued once
 * every instance succeeded; it is not in the counts (the task record's
 * `finalize` holds its state) and the task stays `running` until it ends.
 *
 * Exactly-once recording: an assignment is stored before it is sent; a
 * result is accepted only for the attempt and node the manager assigned
 * (fencing by attempt number), and acknowledged only once stored, so a node
 * resends until it is.
 *
 * Where things are decided: `placement.ts` (which node, fair share,
 * prefetch), `retry_policy.ts` (retry, requeue or fail, and the backoff),
 * `lifecycle.ts` (an attempt from dispatch to its end, a task's end),
 * `store.ts` (group commit, rebuild after a restart), `submit.ts`,
 * `handlers.ts` (cancel, results, node events), `rerun.ts`, `update.ts`
 * (priority, hold), `explain.ts`, `progress.ts`, `assignments.ts` (what a
 * node holds, for the object service); `state.ts` holds what they share.
 * This file wires them.
 *
 * @module
 */
import { unwrap } from "../../core/bus.ts";
import { nodesList } from "../../core/schema.ts";
import { serveExplain } from "./explain.ts";
import { serveMessages, upsertNode } from "./handlers.ts";
import { maybeFinish, requeueFlight } from "./lifecycle.ts";
import { occupySeat } from "./placement.ts";
import { createProgress } from "./progress.ts";
import { createState, type TaskActorDeps, type TaskActorOptions } from "./state.ts";
import { settleWaits } from "./after.ts";
import { serveRerun } from "./rerun.ts";
import { rebuild, startCommitLoop } from "./store.ts";
import { serveSubmit } from "./submit.ts";
import { assignmentView } from "./assignments.ts";
import type { AssignmentView } from "../object_service.ts";
import { serveUpdate } from "./update.ts";

export { clipError, MAX_ATTEMPT_ERROR_CHARS, type TaskActorDeps, type TaskActorOptions } from "./state.ts";
export { nodeCanEverFit } from "./placement.ts";

/** A running task actor. */
export interface TaskActor {
  /** Resolves once state was loaded from Deno KV and subscriptions are live. */
  readonly ready: Promise<void>;
  /** Resolves when the actor has stopped and flushed its writes. */
  readonly stopped: Promise<void>;
  /** Counters for tests and metrics. */
  stats(): { commits: number; dispatched: number; results: number; ignored: number; liveTasks: number };
  /** What each node holds now, for the object service. */
  readonly assignments: AssignmentView;
}

/** Creates the task actor. */
export function createTaskActor(deps: TaskActorDeps, options: TaskActorOptions): TaskActor {
  const s = createState(deps, options);
  const { clock, log, signal } = s;
  const progress = createProgress(s);
  const loop = startCommitLoop(s, progress.note);
  serveSubmit(s);
  serveExplain(s);
  serveMessages(s);
  serveRerun(s);
  serveUpdate(s);

  const ready = (async () => {
    await rebuild(s);
    await settleWaits(s);
    const reply = unwrap(
      await s.bus.request(nodesList, {}, { timeoutMs: 5000 }).catch(() => ({ ok: true as const, nodes: [] })),
    );
    for (const rec of reply.nodes) upsertNode(s, rec);
    for (const live of s.tasks.values()) {
      for (const f of live.flights.values()) {
        const seat = s.nodes.get(f.node);
        if (seat && seat.rec.state !== "lost" && seat.rec.state !== "left") {
          occupySeat(seat, f);
          // A restarted manager gives nodes a grace period to report what they hold.
          f.assignedAt = clock.now();
        } else {
          requeueFlight(s, f, `node ${f.node || "?"} unknown after manager restart`);
        }
      }
      maybeFinish(s, live);
    }
    log.info("task:ready", { liveTasks: s.tasks.size, nodes: s.nodes.size });
    loop.kick();
  })();

  const stopped = new Promise<void>((resolve) => {
    const stop = async () => {
      loop.stopTimer();
      progress.stop();
      await ready.catch(() => {});
      await loop.settle();
      await loop.commit().catch((e) => log.error("task:final-commit-failed", { error: String(e) }));
      resolve();
    };
    if (signal.aborted) void stop();
    else signal.addEventListener("abort", () => void stop(), { once: true });
  });

  return {
    ready,
    stopped,
    stats: () => ({ ...s.stats, liveTasks: s.tasks.size }),
    assignments: assignmentView(s),
  };
}
