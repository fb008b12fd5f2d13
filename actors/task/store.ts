/**
 * How the task actor's memory reaches Deno KV: the commit loop (place, then
 * write all that changed in few atomics, then send what waited for it), the
 * group commit that lets results gather while instances run, the wake-up
 * when a retry falls due, and the rebuild of memory after a (re)start.
 *
 * @module
 */
import { nextTurn, type TimerId } from "../../core/clock.ts";
import { type AssignSpan, FINAL_STATES, type InstanceRecord, type State, type TaskRecord } from "../../core/schema.ts";
import {
  type BatchedWrite,
  failedKey,
  instancesOf,
  spanInstance,
  spansOf,
  TASK_COUNTS_READY,
  taskCountChange,
  taskCountKey,
  taskKey,
  TASKS,
  writeBatched,
} from "../../core/kv.ts";
import { place } from "./lifecycle.ts";
import {
  emptyCounts,
  type Flight,
  isFinalize,
  type Live,
  liveOf,
  markSpan,
  noPending,
  ownerRunning,
  runningCount,
  type Span,
  type TaskState,
} from "./state.ts";

/** The commit loop of {@linkcode startCommitLoop}. */
export interface CommitLoop {
  /** Schedules one cycle (place, then commit) after the current macrotask. */
  kick(): void;
  /** Writes what is pending now (the last commit, on stop). */
  commit(): Promise<void>;
  /** Stops the retry wake-up. */
  stopTimer(): void;
  /** Waits for a cycle under way. */
  settle(): Promise<void>;
}

/**
 * Starts the commit loop; `noteProgress` hears what each commit stored for a task. Sets `s.kick`.
 */
export function startCommitLoop(
  s: TaskState,
  noteProgress: (rec: TaskRecord, changes: InstanceRecord[]) => void,
): CommitLoop {
  const { clock, log, signal } = s;
  let cycling = false;
  let lastCommitAt = -Infinity;
  let again = false;
  let kicked = false;
  let retryTimer: TimerId | undefined;
  let retryTimerAt = Infinity;

  const kick = () => {
    if (kicked || signal.aborted) return;
    kicked = true;
    nextTurn(() => {
      kicked = false;
      void cycle();
    });
  };
  s.kick = kick;

  const dirty = () => s.pending.instances.size > 0 || s.pending.spans.size > 0 || s.pending.tasks.size > 0;

  async function cycle(): Promise<void> {
    if (cycling) {
      again = true;
      return;
    }
    cycling = true;
    try {
      do {
        // Group commit: while more results are on their way, let them gather for a moment after a
        // commit. The last result of a burst (nothing else running) is stored at once.
        const wait = lastCommitAt + s.settings.commitIntervalMs - clock.now();
        if (wait > 0 && !signal.aborted && runningCount(s) > 0) {
          await new Promise((r) => clock.setTimeout(() => r(undefined), wait));
        }
        again = false;
        if (!signal.aborted) {
          place(s);
          armRetryTimer();
        }
        await commit();
        lastCommitAt = clock.now();
      } while (again || dirty());
    } catch (e) {
      log.error("task:commit-failed", { error: String((e as Error)?.stack ?? e) });
      // Kept for the next commit (see commit()): try again shortly.
      if (!signal.aborted) clock.setTimeout(kick, 250);
    } finally {
      cycling = false;
    }
  }

  async function commit(): Promise<void> {
    if (!dirty() && s.pending.afterCommit.length === 0) return;
    const { instances, writes, spans, runs, tasks: touched, afterCommit: actions } = s.pending;
    s.pending = noPending();
    // In this order: instance records before the spans they replace, task records last.
    const entries: BatchedWrite[] = [...writes];
    const states: Array<{ live: Live; state: State; at: number }> = [];
    for (const e of instances.values()) {
      entries.push({ key: e.key, value: e.rec });
      // The failed index: a rerun of what did not succeed reads it instead of every instance record.
      if (e.counted && (e.rec.state === "failed" || e.rec.state === "cancelled")) {
        entries.push({ key: failedKey(e.key[1] as string, e.rec.index), value: true });
      }
    }
    entries.push(...spans.values());
    for (const t of touched) {
      const [rec, bound] = "rec" in t ? [t.rec, t.bound] : [t, undefined];
      // A submitted task's audit entry, Idempotency-Key and data set uses land in the same atomic as the task.
      for (const e of bound ?? []) entries.push({ ...e, withNext: true });
      // The counters of tasks by state and owner move with the record they count.
      if ("rec" in t) {
        entries.push(...taskCountChange(rec.owner, t.storedState ?? null, rec.state));
        // Once the atomic holding the record is stored, so is the state the counters now count it in.
        states.push({ live: t, state: rec.state, at: entries.length });
      }
      entries.push({ key: taskKey(rec.id), value: rec });
    }
    const noteStored = (stored: number) => {
      for (const st of states) if (st.at < stored) st.live.storedState = st.state;
    };
    try {
      // writeBatched serializes every value before it awaits: no copies needed.
      log.step("task.commit");
      s.stats.commits += await writeBatched(s.kv, entries, noteStored);
      log.step("task.committed");
    } catch (e) {
      // Nothing is dropped: what this commit carried waits for the next one (newer changes win), answers too.
      const p = s.pending;
      for (const [k, v] of instances) if (!p.instances.has(k)) p.instances.set(k, v);
      p.writes.unshift(...writes);
      for (const [k, v] of spans) if (!p.spans.has(k)) p.spans.set(k, v);
      for (const [k, v] of runs) p.runs.set(k, [...v, ...p.runs.get(k) ?? []]);
      for (const t of touched) p.tasks.add(t);
      p.afterCommit.unshift(...actions);
      throw e;
    }
    for (const t of touched) if ("rec" in t) t.bound = undefined;
    const changes = runs;
    for (const { key, rec } of instances.values()) {
      const id = key[1] as string;
      changes.get(id)?.push(rec) ?? changes.set(id, [rec]);
    }
    // Assignments and done events first: they are on the way of an instance's start and a task's end.
    for (const action of actions) {
      try {
        action();
      } catch (e) {
        log.warn("task:after-commit-failed", { error: String(e) });
      }
    }
    for (const t of touched) {
      const rec = "rec" in t ? t.rec : t;
      noteProgress(rec, changes.get(rec.id) ?? []);
    }
  }

  /** Wakes the actor when the earliest retry falls due. */
  function armRetryTimer(): void {
    let earliest = Infinity;
    for (const t of s.tasks.values()) {
      for (const r of t.retry) earliest = Math.min(earliest, r.notBefore ?? 0);
    }
    if (earliest === Infinity || earliest >= retryTimerAt) return;
    if (retryTimer !== undefined) clock.clearTimeout(retryTimer);
    retryTimerAt = earliest;
    retryTimer = clock.setTimeout(() => {
      retryTimer = undefined;
      retryTimerAt = Infinity;
      kick();
    }, Math.max(0, earliest - clock.now()));
  }

  return {
    kick,
    commit,
    stopTimer() {
      if (retryTimer !== undefined) clock.clearTimeout(retryTimer);
    },
    async settle() {
      while (cycling) await new Promise((r) => setTimeout(r, 5));
    },
  };
}

/**
 * Rebuilds memory from Deno KV after a (re)start: every task not final, its retries, and its attempts in flight (from
 * their records, or from the spans that stand for first attempts). Their nodes' seats are booked later, once the nodes
 * are known.
 */
export async function rebuild(s: TaskState): Promise<void> {
  const ready = await s.kv.get(TASK_COUNTS_READY);
  const byStateOwner = new Map<string, { state: State; owner: string; n: number }>();
  for await (const entry of s.kv.list<TaskRecord>({ prefix: TASKS })) {
    const rec = entry.value;
    if (!ready.value) {
      const k = `${rec.state}/${rec.owner}`;
      const c = byStateOwner.get(k) ?? byStateOwner.set(k, { state: rec.state, owner: rec.owner, n: 0 }).get(k)!;
      c.n++;
    }
    if (FINAL_STATES.has(rec.state)) continue;
    const live = liveOf(rec);
    live.storedState = rec.state;
    const counts = emptyCounts();
    let maxIndex = -1;
    const seen = new Set<number>();
    for await (const ie of s.kv.list<InstanceRecord>({ prefix: instancesOf(rec.id) })) {
      const inst = ie.value;
      if (isFinalize(rec, inst.index) && FINAL_STATES.has(inst.state)) {
        // Ended while its task did not: the run before a rerun, which runs it again once every instance succeeded.
        rec.finalize = null;
        live.finalizeRec = inst;
        continue;
      } else if (isFinalize(rec, inst.index)) {
        // The finalize run is not counted; its own record says where it is.
        rec.finalize = inst.state;
      } else {
        seen.add(inst.index);
        maxIndex = Math.max(maxIndex, inst.index);
        counts[inst.state]++;
      }
      if (inst.state === "queued") live.retry.push(inst);
      if (inst.state === "running") {
        const last = inst.history[inst.history.length - 1];
        const flight: Flight = { live, rec: inst, node: inst.node ?? "", assignedAt: last?.assignedAt ?? 0 };
        live.flights.set(inst.index, flight);
      }
    }
    // First attempts that ran under a span when the manager stopped, and have no record of their own.
    for await (const se of s.kv.list<AssignSpan>({ prefix: spansOf(rec.id) })) {
      const span: Span = { key: se.key, value: se.value, open: 0 };
      for (let i = span.value.from; i < span.value.to; i++) {
        if (seen.has(i)) continue;
        seen.add(i);
        maxIndex = Math.max(maxIndex, i);
        counts.running++;
        span.open++;
        live.flights.set(i, {
          live,
          rec: spanInstance(span.value, i),
          node: span.value.node,
          assignedAt: span.value.assignedAt,
          span,
        });
      }
      if (span.open === 0) markSpan(s, span);
    }
    const next = Math.max(rec.nextIndex, maxIndex + 1);
    for (let i = rec.nextIndex; i < next; i++) {
      if (!seen.has(i)) {
        live.retry.push({ index: i, state: "queued", attempt: 0, node: null, notBefore: null, history: [] });
        counts.queued++;
      }
    }
    rec.nextIndex = next;
    counts.queued += rec.spec.instances - next;
    rec.counts = counts;
    s.tasks.set(rec.id, live);
    ownerRunning(s, rec.owner, live.flights.size);
    s.pending.tasks.add(live);
  }
  // A store from before the counters: count once, from the records read above, and say so (last).
  if (!ready.value) {
    const counters = [...byStateOwner.values()].map(({ state, owner, n }) => ({
      key: taskCountKey(state, owner),
      value: new Deno.KvU64(BigInt(n)),
    }));
    await writeBatched(s.kv, [...counters, { key: TASK_COUNTS_READY, value: true }]);
  }
}
