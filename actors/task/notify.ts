/**
 * A task's end owes its `[notify]` webhook a notification when it ended in a
 * state of `on`: the writes that record the debt land in the same atomic as
 * the task's final record, so a manager stopped right after still owes it
 * (the notify service, `services/notify.ts`, delivers it).
 *
 * @module
 */
import type { BatchedWrite } from "../../core/kv.ts";
import { notifyKey, notifyOutboxKey } from "../../core/kv.ts";
import type { NotifyOutbox } from "../../core/notify.ts";
import type { NotifyOn, NotifyStatus, TaskRecord } from "../../core/schema.ts";

/** The writes that owe the webhook of `rec`, which just ended, its notification; none when it is not told. */
export function owedNotification(rec: TaskRecord): BatchedWrite[] {
  const notify = rec.spec.notify;
  if (!notify || rec.endedAt === null) return [];
  const told = notify.on.includes(rec.state as NotifyOn);
  const status: NotifyStatus = {
    phase: told ? "pending" : "skipped",
    state: rec.state,
    nextAt: told ? rec.endedAt : null,
    deliveries: [],
  };
  if (!told) return [{ key: notifyKey(rec.id), value: status }];
  const owed: NotifyOutbox = {
    url: notify.url,
    task: {
      id: rec.id,
      name: rec.name,
      owner: rec.owner,
      state: rec.state,
      reason: rec.reason,
      instances: rec.spec.instances,
      counts: { ...rec.counts },
      createdAt: rec.createdAt,
      startedAt: rec.startedAt,
      endedAt: rec.endedAt,
      link: null,
    },
    tries: 0,
    nextAt: rec.endedAt,
    body: null,
  };
  return [{ key: notifyKey(rec.id), value: status }, { key: notifyOutboxKey(rec.id), value: owed }];
}
