/**
 * Who may see and do what, and reading tasks and instances as a caller may
 * see them: shared by the gateway's routes.
 *
 * @module
 */
import type { DataCaller } from "../services/data/access.ts";
import { readInstances, taskKey } from "../core/kv.ts";
import { NotFoundError } from "../core/errors.ts";
import type { InstanceRecord, State, TaskRecord, TokenRecord } from "../core/schema.ts";

/**
 * The owner rule: admins and viewers see every task, a submitter only its
 * own. Every route and stream that shows a task asks this.
 */
export function canSee(who: TokenRecord, task: { owner: string }): boolean {
  return who.role !== "submitter" || task.owner === who.user;
}

/** The caller as the data actor knows callers. */
export const caller = (who: TokenRecord): DataCaller => ({ user: who.user, admin: who.role === "admin" });

/** The state of an instance, from its record (or from the task when it has none yet). */
export function instanceState(task: TaskRecord, rec: InstanceRecord | null): State {
  return rec?.state ?? (task.state === "cancelled" ? "cancelled" : "queued");
}

/**
 * Reads the records of instances `from` to `to - 1`: each one's own, or, while
 * its first attempt runs, the one its assignment span stands for (see
 * `readInstances` in core/kv.ts). Instances never dispatched have none.
 */
export const readInstanceRecords: (
  kv: Deno.Kv,
  taskId: string,
  from: number,
  to: number,
) => Promise<Map<number, InstanceRecord>> = readInstances;

/** Reads the record of one instance (see {@linkcode readInstanceRecords}), or null. */
export async function readInstanceRecord(kv: Deno.Kv, taskId: string, index: number): Promise<InstanceRecord | null> {
  return (await readInstances(kv, taskId, index, index + 1)).get(index) ?? null;
}

/**
 * Reads a task the caller may see.
 *
 * @throws {NotFoundError} When it does not exist or belongs to another submitter.
 */
export async function loadTask(kv: Deno.Kv, id: string, who: TokenRecord): Promise<TaskRecord> {
  const rec = /^t[0-9a-z]{16}$/.test(id) ? (await kv.get<TaskRecord>(taskKey(id))).value : null;
  if (!rec || !canSee(who, rec)) {
    throw new NotFoundError(`Task '${id}' does not exist`, { code: "task_not_found" });
  }
  return rec;
}
