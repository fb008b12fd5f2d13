/**
 * Progress events: after a commit, at most one per task per `progressMs`
 * (the final one goes out at once), naming the instances that changed.
 *
 * @module
 */
import type { TimerId } from "../../core/clock.ts";
import {
  FINAL_STATES,
  type InstanceRecord,
  MAX_PROGRESS_CHANGES,
  type State,
  type TaskProgress,
  taskProgress,
  type TaskRecord,
} from "../../core/schema.ts";
import type { TaskState } from "./state.ts";

/** The progress events of {@linkcode createProgress}. */
export interface Progress {
  /** Notes what a commit stored for a task, and publishes it now or when the task's throttle allows. */
  note(rec: TaskRecord, changes: InstanceRecord[]): void;
  /** Stops the timers of events waiting for their throttle. */
  stop(): void;
}

/** Creates the progress events of the task actor. */
export function createProgress(s: TaskState): Progress {
  const { clock, signal } = s;
  const progress = new Map<string, {
    lastAt: number;
    timer?: TimerId;
    event?: Omit<TaskProgress, "changed">;
    changed: Map<number, State> | null;
  }>();

  function note(rec: TaskRecord, changes: InstanceRecord[]): void {
    if (signal.aborted) return;
    let p = progress.get(rec.id);
    if (!p) progress.set(rec.id, p = { lastAt: -Infinity, changed: new Map() });
    for (const inst of changes) {
      if (p.changed && p.changed.size >= MAX_PROGRESS_CHANGES && !p.changed.has(inst.index)) p.changed = null;
      p.changed?.set(inst.index, inst.state);
    }
    const { id: taskId, name, owner, state, createdAt, startedAt, endedAt, reason, cpuMs, wallMs, maxRssBytes } = rec;
    p.event = {
      taskId,
      name,
      owner,
      state,
      counts: { ...rec.counts },
      instances: rec.spec.instances,
      createdAt,
      startedAt,
      endedAt,
      reason,
      cpuMs,
      wallMs,
      maxRssBytes,
    };
    const waitMs = p.lastAt + s.settings.progressMs - clock.now();
    // A task's last event, which ends a wait, goes at once; others after what the commit sent first.
    if (FINAL_STATES.has(state)) send(taskId);
    else if (waitMs <= 0) send(taskId, true);
    else p.timer ??= clock.setTimeout(() => send(taskId), waitMs);
  }

  /** Events queued in a microtask (see `send`), by task. */
  const queued = new Map<string, number>();

  /** Publishes the task's event; `afterCommit`: in a microtask, behind what the commit published first. */
  function send(taskId: string, afterCommit = false): void {
    const p = progress.get(taskId);
    if (!p?.event) return;
    if (p.timer !== undefined) clock.clearTimeout(p.timer);
    const event: TaskProgress = { ...p.event, changed: p.changed ? [...p.changed] : null };
    if (FINAL_STATES.has(event.state)) progress.delete(taskId);
    else Object.assign(p, { lastAt: clock.now(), timer: undefined, event: undefined, changed: new Map() });
    const publish = () => {
      try {
        s.bus.publish(taskProgress(taskId), event);
      } catch (e) {
        s.log.warn("task:progress-not-sent", { taskId, error: String(e) });
      }
    };
    // The assignments a commit sent are on the way of an instance's start: they go out to NATS (flushed in a
    // microtask) before this event is checked and encoded. An event of a task with one still queued queues too:
    // microtasks run in order, so a task's events never overtake each other.
    if (afterCommit || queued.has(taskId)) {
      queued.set(taskId, (queued.get(taskId) ?? 0) + 1);
      queueMicrotask(() => {
        const left = queued.get(taskId)! - 1;
        if (left === 0) queued.delete(taskId);
        else queued.set(taskId, left);
        publish();
      });
    } else publish();
  }

  return {
    note,
    stop() {
      for (const p of progress.values()) if (p.timer !== undefined) clock.clearTimeout(p.timer);
    },
  };
}
