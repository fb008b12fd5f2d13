/**
 * A task's failed instances, a page at a time, from the failure index the
 * task actor keeps beside the instance records (`["failed", task, index]`):
 * a read costs its page, never a scan of the task's instances.
 *
 * @module
 */
import { failedKey, instanceKey } from "../core/kv.ts";
import type { InstanceRecord, TaskRecord } from "../core/schema.ts";

/** Keys Deno KV reads in one `getMany`. */
const GET_MANY = 10;

/** One page of failed instances. */
export interface FailedPage {
  /** Their records, in index order. */
  records: InstanceRecord[];
  /** The index to ask `from` for the next page, or null after the last failure. */
  next: number | null;
}

/** Reads the records of up to `limit` failed instances of `task` at index `from` or above. */
export async function readFailedPage(kv: Deno.Kv, task: TaskRecord, from: number, limit: number): Promise<FailedPage> {
  const indexes: number[] = [];
  let next: number | null = null;
  const end = failedKey(task.id, task.spec.instances);
  for await (const e of kv.list({ start: failedKey(task.id, from), end }, { limit: limit + 1 })) {
    const index = e.key[2] as number;
    if (indexes.length === limit) next = index;
    else indexes.push(index);
  }
  const chunks: Array<Promise<Deno.KvEntryMaybe<InstanceRecord>[]>> = [];
  for (let i = 0; i < indexes.length; i += GET_MANY) {
    chunks.push(kv.getMany<InstanceRecord[]>(indexes.slice(i, i + GET_MANY).map((k) => instanceKey(task.id, k))));
  }
  const records = (await Promise.all(chunks)).flat().flatMap((e) => e.value?.state === "failed" ? [e.value] : []);
  return { records, next };
}
