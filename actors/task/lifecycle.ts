/**
 * An attempt's life: taken off its task for a node, landed when its result
 * comes (or its node is lost or forgot it), then retried, requeued or ended;
 * a task ends when its last instance (and its `[finalize]` run) did.
 *
 * @module
 */
import {
  AVOID_AFTER_FAILURES,
  type Heartbeat,
  type InstanceRecord,
  type Kill,
  nodeAssign,
  nodeKill,
  type Result,
  type State,
  taskDone,
} from "../../core/schema.ts";
import { spanKey } from "../../core/kv.ts";
import {
  avoidedEverywhere,
  avoidedNodes,
  chunkAt,
  fitsNow,
  type Item,
  occupySeat,
  otherNodeFits,
  plan,
  prefersAnotherNode,
  throttleRoom,
  vacateSeat,
} from "./placement.ts";
import { howItEnded } from "../../core/outcome.ts";
import { decideRetry, isLoss } from "./retry_policy.ts";
import { releaseDependents } from "./after.ts";
import { owedNotification } from "./notify.ts";
import {
  clipError,
  fairShare,
  type Flight,
  isFinalize,
  type Live,
  markInstance,
  markSpan,
  type NodeSeat,
  ownerRunning,
  type Span,
  type TaskState,
  usageOf,
} from "./state.ts";

/** The attempts since an instance's latest rerun: each rerun gets the task's retries anew. */
const sinceRerun = (rec: InstanceRecord) => rec.rerunAt ? rec.history.slice(rec.rerunAt) : rec.history;

/**
 * An ended instance's record made ready to run again: queued under the next attempt number (a node stores outputs
 * only over an earlier attempt's), its history kept.
 */
export function rerunRecord(rec: InstanceRecord): InstanceRecord {
  rec.attempt = rec.history.length > 0 ? rec.attempt + 1 : rec.attempt;
  rec.rerunAt = rec.history.length;
  rec.state = "queued";
  rec.node = null;
  rec.notBefore = null;
  return rec;
}

/** Places what can be placed and queues the assignments to be sent once the commit stored them. */
export function place(s: TaskState): void {
  const now = s.clock.now();
  for (const live of s.tasks.values()) endIfAvoidedEverywhere(s, live);
  const outgoing = plan(
    s.tasks.values(),
    s.nodes.values(),
    now,
    s.settings,
    fairShare(s),
    (live, seat, count) => takeInstances(s, live, seat, count, now),
  );
  for (const [name, msg] of outgoing) {
    const flights = msg.tasks.flatMap((t) => t.items.map((i) => s.tasks.get(t.taskId)?.flights.get(i.index)));
    s.pending.afterCommit.push(() => {
      s.log.step("task.assign");
      s.bus.publish(nodeAssign(name), msg);
      // A node is given its orphan grace from now: a slow commit must not count as time it had to list them.
      const sentAt = s.clock.now();
      for (const f of flights) if (f) f.assignedAt = sentAt;
    });
  }
}

/**
 * Ends a task none of whose queued instances can go anywhere: every ready node that fits failed
 * {@linkcode AVOID_AFTER_FAILURES} of its attempts and none succeeded there (a broken task, or broken nodes), and
 * nothing of it runs (a result may yet clear a node). Its retries fail, what was never dispatched counts as
 * cancelled, and the reason names the nodes; a rerun after a fix clears them. A task that fails on every node it
 * can run on is most likely broken itself: its other instances would fail there too.
 */
function endIfAvoidedEverywhere(s: TaskState, live: Live): void {
  const rec = live.rec;
  const queued = rec.counts.queued + (rec.finalize === "queued" ? 1 : 0);
  if (queued === 0 || live.flights.size > 0 || rec.held || rec.waitingOn?.length) return;
  let failing = false;
  for (const node in rec.nodeFailures) if (rec.nodeFailures[node] >= AVOID_AFTER_FAILURES) failing = true;
  const fits = failing ? avoidedEverywhere(rec, s.nodes.values()) : null;
  if (!fits) return;
  const nodes = fits.map((n) => `${n.rec.name} (${rec.nodeFailures[n.rec.name]} failed)`).join(", ");
  const reason = `every ready node that fits failed ${AVOID_AFTER_FAILURES} or more of its attempts and none ` +
    `succeeded there: ${nodes}; ${queued} not run: fix the cause, then parallelic rerun ${rec.id}`;
  for (const r of live.retry) {
    r.state = "failed";
    markInstance(s, live, r);
    if (isFinalize(rec, r.index)) rec.finalize = "failed";
    else rec.counts.failed++;
  }
  live.retry = [];
  // As a cancel leaves them: from the cursor on, without records (a rerun finds them there).
  rec.counts.cancelled += rec.spec.instances - rec.nextIndex;
  rec.counts.queued = 0;
  s.log.warn("task:avoided-everywhere", { taskId: rec.id, nodes: fits.map((n) => n.rec.name) });
  finishTask(s, live, "failed", reason);
}

/** Takes up to `count` instances of a task for a node: retries due first, then first attempts from the cursor. */
export function takeInstances(s: TaskState, live: Live, seat: NodeSeat, count: number, now: number): Item[] {
  const spec = live.rec.spec;
  const items: Item[] = [];
  let processes = 0;
  const assign = (rec: InstanceRecord, span?: Span, rider = false) => {
    rec.state = "running";
    rec.node = seat.rec.name;
    rec.notBefore = null;
    rec.history.push({
      attempt: rec.attempt,
      node: seat.rec.name,
      assignedAt: now,
      startedAt: null,
      endedAt: null,
      exitCode: null,
      signal: null,
      error: null,
    });
    const flight: Flight = { live, rec, node: seat.rec.name, assignedAt: now, span, rider };
    if (!rider) processes++;
    live.flights.set(rec.index, flight);
    occupySeat(seat, flight);
    if (isFinalize(live.rec, rec.index)) live.rec.finalize = "running";
    else {
      live.rec.counts.queued--;
      live.rec.counts.running++;
    }
    if (span) {
      span.open++;
      s.pending.runs.get(live.rec.id)?.push(rec) ?? s.pending.runs.set(live.rec.id, [rec]);
    } else markInstance(s, live, rec);
    items.push({ index: rec.index, attempt: rec.attempt });
  };
  // A retry runs alone, even of a chunked task, and prefers another node than the one its last attempt failed on,
  // when one can take it.
  const elsewhere = live.retry.length > 0 &&
    otherNodeFits(live, seat, s.nodes.values(), avoidedNodes(live.rec));
  for (let i = 0; i < live.retry.length && processes < count;) {
    const rec = live.retry[i];
    const due = (rec.notBefore ?? 0) <= now && !prefersAnotherNode(rec, seat, now, elsewhere);
    if (due && fitsNow(seat, live, s.settings)) {
      live.retry.splice(i, 1);
      assign(rec);
    } else i++;
  }
  // First attempts, from the cursor: one span per node and cycle stands for their records.
  let span: Span | undefined;
  const chunkRecs: InstanceRecord[] = [];
  while (processes < count && live.rec.nextIndex < spec.instances && fitsNow(seat, live, s.settings)) {
    if (!span) {
      const from = live.rec.nextIndex;
      const last = live.lastSpan;
      span = last && last.value.to === from && last.value.node === seat.rec.name && last.value.assignedAt === now
        ? last
        : {
          key: spanKey(live.rec.id, from),
          value: { from, to: from, node: seat.rec.name, assignedAt: now },
          open: 0,
        };
      live.lastSpan = span;
    }
    // One process runs `size` consecutive instances: the first books the seat, the others ride along.
    const size = chunkAt(spec, live.rec.nextIndex, throttleRoom(live));
    const head = items.length;
    for (let k = 0; k < size; k++) {
      span.value.to = live.rec.nextIndex + 1;
      const rec: InstanceRecord = {
        index: live.rec.nextIndex++,
        state: "queued",
        attempt: 0,
        node: null,
        notBefore: null,
        history: [],
      };
      assign(rec, span, k > 0);
      chunkRecs.push(rec);
    }
    if (size > 1) {
      items[head].chunk = size;
      // Each instance's attempt says which process ran it: the chunk's log is under its first instance.
      const chunk = { first: items[head].index, last: items[head].index + size - 1 };
      for (const rec of chunkRecs.splice(0)) rec.history[rec.history.length - 1].chunk = chunk;
    } else chunkRecs.length = 0;
  }
  if (span) markSpan(s, span);
  if (items.length > 0) {
    s.pending.tasks.add(live);
    ownerRunning(s, live.rec.owner, items.length);
    s.usageByOwner.set(live.rec.owner, { value: usageOf(s, live.rec.owner, now) + items.length, at: now });
    if (live.rec.state === "queued") {
      live.rec.state = "running";
      live.rec.startedAt = now;
    }
    s.stats.dispatched += items.length;
    s.meters.dispatchedTotal.inc({}, items.length);
  }
  return items;
}

/** Removes a flight from its node and task; returns its history entry. */
export function land(s: TaskState, flight: Flight) {
  const { live, rec, span } = flight;
  live.flights.delete(rec.index);
  // Every caller writes the instance's own record next: the span no longer stands for it.
  if (span && --span.open === 0) markSpan(s, span);
  vacateSeat(s.nodes.get(flight.node), flight);
  if (!isFinalize(live.rec, rec.index)) live.rec.counts.running--;
  ownerRunning(s, live.rec.owner, -1);
  return rec.history[rec.history.length - 1];
}

function requeue(s: TaskState, live: Live, rec: InstanceRecord, delayMs: number) {
  rec.state = "queued";
  rec.attempt++;
  rec.node = null;
  rec.notBefore = delayMs > 0 ? s.clock.now() + delayMs : null;
  live.retry.push(rec);
  if (isFinalize(live.rec, rec.index)) live.rec.finalize = "queued";
  else live.rec.counts.queued++;
  markInstance(s, live, rec);
}

function end(s: TaskState, live: Live, rec: InstanceRecord, state: State) {
  rec.state = state;
  markInstance(s, live, rec);
  if (isFinalize(live.rec, rec.index)) {
    live.rec.finalize = state;
    const why = state === "succeeded" ? null : `finalize ${state}: ${howItEnded(rec.history[rec.history.length - 1])}`;
    return finishTask(s, live, state, why);
  }
  live.rec.counts[state as "succeeded" | "failed" | "cancelled"]++;
  maybeFinish(s, live);
}

/** Queues the `[finalize]` run: the extra instance numbered `instances`. */
function startFinalize(s: TaskState, live: Live) {
  const rec: InstanceRecord = live.finalizeRec
    ? rerunRecord(live.finalizeRec)
    : { index: live.rec.spec.instances, state: "queued", attempt: 0, node: null, notBefore: null, history: [] };
  live.finalizeRec = undefined;
  live.retry.push(rec);
  live.rec.finalize = "queued";
  markInstance(s, live, rec);
  s.log.info("task:finalize-queued", { taskId: live.rec.id });
  s.kick();
}

/** Ends the task once nothing of it is queued or running (first queueing its `[finalize]` run, if it has one). */
export function maybeFinish(s: TaskState, live: Live) {
  const c = live.rec.counts;
  if (c.queued > 0 || c.running > 0 || live.rec.nextIndex < live.rec.spec.instances) return;
  if (live.rec.finalize === "queued" || live.rec.finalize === "running") return;
  const state: State = c.failed > 0 ? "failed" : c.cancelled > 0 ? "cancelled" : "succeeded";
  if (state === "succeeded" && live.rec.spec.finalize && !live.rec.finalize) return startFinalize(s, live);
  finishTask(s, live, state, state === "failed" ? `${c.failed} of ${live.rec.spec.instances} instances failed` : null);
}

/** Ends a task: it leaves memory, and its done event goes out once stored. */
export function finishTask(s: TaskState, live: Live, state: State, reason: string | null) {
  s.meters.tasksFinished.inc({ state });
  live.rec.state = state;
  live.rec.endedAt = s.clock.now();
  live.rec.reason = reason;
  // The webhook's notification is owed in the same atomic as the final record: none is lost to a restart.
  const owed = owedNotification(live.rec);
  if (owed.length) live.bound = [...live.bound ?? [], ...owed];
  s.tasks.delete(live.rec.id);
  s.pending.tasks.add(live);
  const done = { taskId: live.rec.id, state, counts: { ...live.rec.counts } };
  s.pending.afterCommit.push(() => {
    s.log.step("task.done");
    s.bus.publish(taskDone(live.rec.id), done);
  });
  s.log.info("task:done", { taskId: live.rec.id, state, counts: live.rec.counts });
  releaseDependents(s, live.rec.id, state);
}

/** Records one result; returns false when it is stale (fenced) and ignored. */
export function accept(s: TaskState, node: string, r: Result): boolean {
  const live = s.tasks.get(r.taskId);
  const flight = live?.flights.get(r.index);
  if (!live || !flight || flight.rec.attempt !== r.attempt || flight.node !== node) return false;
  const entry = land(s, flight);
  const seat = s.nodes.get(node);
  if (r.startedAt !== null) s.meters.duration.observe((r.endedAt - r.startedAt) / 1000);
  if (seat && r.startedAt !== null) {
    const ms = r.endedAt - r.startedAt;
    seat.avgRunMs = seat.avgRunMs === null ? ms : seat.avgRunMs * 0.9 + ms * 0.1;
  }
  entry.startedAt = r.startedAt;
  entry.endedAt = r.endedAt;
  entry.exitCode = r.exitCode;
  entry.signal = r.signal;
  entry.error = clipError(r.error);
  // Said by the node when it knows; an older node leaves it out (then the error's wording decides, see isLoss).
  if (r.lost !== undefined) entry.lost = r.lost;
  if (r.lastStderr !== undefined) entry.lastStderr = r.lastStderr;
  if (r.hint !== undefined) {
    entry.hint = r.hint;
    // The task shows the first one: its instances most likely share the mistake.
    live.rec.hint ??= `${isFinalize(live.rec, r.index) ? "finalize" : `instance ${r.index}`} ${r.hint}`;
  }
  const rec = flight.rec;
  // Each attempt's outputs replace the instance's earlier ones in the workspace.
  const before = rec.history.findLast((h) => h !== entry && h.outputBytes !== undefined)?.outputBytes ?? 0;
  entry.outputBytes = r.outputBytes;
  live.rec.outputBytes = (live.rec.outputBytes ?? 0) + r.outputBytes - before;
  live.rec.logBytes = (live.rec.logBytes ?? 0) + r.logBytes;
  s.meters.attemptUsage(live.rec, entry, r);
  if (r.exitCode === 0 && r.error === null) {
    const ok = live.rec.nodeSuccesses ??= {};
    ok[node] = (ok[node] ?? 0) + 1;
    s.meters.endedTotal.inc({ outcome: "succeeded" });
    end(s, live, rec, "succeeded");
    return true;
  }
  // A node that keeps failing the task's instances is avoided (placement.ts); the task's own trouble, not a loss.
  if (!isLoss(entry)) {
    live.rec.nodeFailures = { ...live.rec.nodeFailures, [node]: (live.rec.nodeFailures?.[node] ?? 0) + 1 };
  }
  const next = decideRetry(sinceRerun(rec), { ...s.settings, retries: live.rec.spec.retries });
  const outcome = { fail: "failed", retry: "retried", requeue: "requeued" }[next.action];
  s.meters.endedTotal.inc({ outcome });
  if (next.action === "fail") end(s, live, rec, "failed");
  else requeue(s, live, rec, next.afterMs);
  return true;
}

/** Sends instances held by a node that is gone (or forgot them) back to the queue. */
export function requeueFlight(s: TaskState, flight: Flight, why: string) {
  const entry = land(s, flight);
  entry.error = clipError(why);
  entry.lost = true;
  entry.endedAt = s.clock.now();
  s.meters.endedTotal.inc({ outcome: "requeued" });
  const next = decideRetry(sinceRerun(flight.rec), { ...s.settings, retries: flight.live.rec.spec.retries }, {
    nodeGone: true,
  });
  if (next.action === "fail") end(s, flight.live, flight.rec, "failed");
  else requeue(s, flight.live, flight.rec, next.afterMs);
}

/** Cancels a live task: what runs is killed (after the commit), what waits is cancelled. */
export function cancelTask(s: TaskState, live: Live, by: string, reason = `cancelled by ${by}`): void {
  const now = s.clock.now();
  const kills = new Map<string, Kill["items"]>();
  for (const flight of [...live.flights.values()]) {
    const entry = land(s, flight);
    entry.error = reason;
    entry.endedAt = now;
    flight.rec.state = "cancelled";
    markInstance(s, live, flight.rec);
    if (!kills.has(flight.node)) kills.set(flight.node, [{ taskId: live.rec.id }]);
  }
  for (const rec of live.retry) {
    rec.state = "cancelled";
    markInstance(s, live, rec);
  }
  live.retry = [];
  if (live.rec.finalize === "queued" || live.rec.finalize === "running") live.rec.finalize = "cancelled";
  const c = live.rec.counts;
  c.cancelled = live.rec.spec.instances - c.succeeded - c.failed;
  c.queued = 0;
  c.running = 0;
  finishTask(s, live, "cancelled", reason);
  for (const [node, items] of kills) {
    s.pending.afterCommit.push(() => s.bus.publish(nodeKill(node), { items, reason: `task cancelled by ${by}` }));
  }
}

/**
 * Compares what a node says it holds with what the manager dispatched to it:
 * requeues what it should hold but does not (a lost assignment message),
 * and kills what it holds but should not (a stale attempt).
 */
export function reconcile(s: TaskState, hb: Heartbeat) {
  const seat = s.nodes.get(hb.name);
  if (!seat) return;
  const now = s.clock.now();
  const held = new Set(hb.holding.map((h) => `${h.taskId}/${h.index}/${h.attempt}`));
  let orphans = 0;
  for (const f of [...seat.flights]) {
    if (
      !held.has(`${f.live.rec.id}/${f.rec.index}/${f.rec.attempt}`) && now - f.assignedAt > s.settings.orphanGraceMs
    ) {
      requeueFlight(s, f, `node ${hb.name} no longer held it`);
      orphans++;
    }
  }
  const stale: Kill["items"] = [];
  for (const h of hb.holding) {
    const f = s.tasks.get(h.taskId)?.flights.get(h.index);
    if (!f || f.rec.attempt !== h.attempt || f.node !== hb.name) stale.push(h);
  }
  if (stale.length) s.bus.publish(nodeKill(hb.name), { items: stale, reason: "stale attempt" });
  if (orphans) {
    s.log.warn("task:orphans-requeued", { node: hb.name, instances: orphans });
    s.kick();
  }
}
