/**
 * Who may see and do what, and reading tasks and instances as a caller may
 * see them: shared by the gateway's routes.
 *
 * @module
 */
import { instanceKey, taskKey } from "../actors/keys.ts";
import { NotFoundError } from "../core/errors.ts";
import type { InstanceRecord, State, TaskRecord } from "../core/schema.ts";
import type { TokenRecord } from "./auth.ts";

/** The state of an instance, from its record (or from the task when it has none yet). */
export function instanceState(task: TaskRecord, rec: InstanceRecord | null): State {
  return rec?.state ?? (task.state === "cancelled" ? "cancelled" : "queued");
}

/** Reads the records of instances `from` to `to - 1` (only dispatched instances have one). */
export async function readInstanceRecords(
  kv: Deno.Kv,
  taskId: string,
  from: number,
  to: number,
): Promise<Map<number, InstanceRecord>> {
  const records = new Map<number, InstanceRecord>();
  for await (const e of kv.list<InstanceRecord>({ start: instanceKey(taskId, from), end: instanceKey(taskId, to) })) {
    records.set(e.value.index, e.value);
  }
  return records;
}

/**
 * Reads a task the caller may see.
 *
 * @throws {NotFoundError} When it does not exist or belongs to another submitter.
 */
export async function loadTask(kv: Deno.Kv, id: string, who: TokenRecord): Promise<TaskRecord> {
  const rec = /^t[0-9a-z]{16}$/.test(id) ? (await kv.get<TaskRecord>(taskKey(id))).value : null;
  if (!rec || (who.role === "submitter" && rec.owner !== who.user)) {
    throw new NotFoundError(`Task '${id}' does not exist`, { code: "task_not_found" });
  }
  return rec;
}
