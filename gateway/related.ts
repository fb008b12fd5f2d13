/**
 * What a task is tied to, for its page: the data set versions it pinned,
 * the tasks it waits for (`[after]`) and the tasks that wait for it, each
 * with its state when the caller may see it.
 *
 * @module
 */
import { dependentsOf, taskKey } from "../core/kv.ts";
import { z } from "zod";
import { State, type TaskRecord, type TokenRecord } from "../core/schema.ts";
import { canSee } from "./access.ts";

/** Most dependents listed. */
export const MAX_DEPENDENTS = 100;

/** A task another is tied to: its name and state when the caller may see it, else null. */
export const RelatedTask = z.object({ id: z.string(), name: z.string().nullable(), state: State.nullable() });
/** A task another is tied to. */
export type RelatedTask = z.infer<typeof RelatedTask>;

/** `GET /api/v1/tasks/{id}/related`. */
export const RelatedView = z.object({
  taskId: z.string(),
  /** `[data]`: the key, the data set and the version pinned at submit. */
  data: z.array(z.object({ key: z.string(), name: z.string(), version: z.string().nullable() })),
  /** `[after] tasks`, and what the task waits for them to do. */
  upstream: z.array(RelatedTask),
  when: z.enum(["succeeded", "ended"]).nullable(),
  /** Tasks whose `[after]` names this one (the first {@linkcode MAX_DEPENDENTS}). */
  dependents: z.array(RelatedTask),
});
/** What a task is tied to. */
export type RelatedView = z.infer<typeof RelatedView>;

async function related(kv: Deno.Kv, id: string, who: TokenRecord): Promise<RelatedTask> {
  const rec = (await kv.get<TaskRecord>(taskKey(id))).value;
  return rec && canSee(who, rec) ? { id, name: rec.name, state: rec.state } : { id, name: null, state: null };
}

/** Reads what `task` is tied to, as `who` may see it. */
export async function relatedOf(kv: Deno.Kv, task: TaskRecord, who: TokenRecord): Promise<RelatedView> {
  const data = Object.entries(task.spec.data ?? {}).map(([key, d]) => ({ key, name: d.name, version: d.version }));
  const upstream = await Promise.all((task.spec.after?.tasks ?? []).map((id) => related(kv, id, who)));
  const dependents: RelatedTask[] = [];
  for await (const e of kv.list<{ taskId: string }>({ prefix: dependentsOf(task.id) }, { limit: MAX_DEPENDENTS })) {
    const dep = await related(kv, e.value.taskId, who);
    // A task of another submitter is not even named.
    if (dep.state !== null) dependents.push(dep);
  }
  return { taskId: task.id, data, upstream, when: task.spec.after?.when ?? null, dependents };
}
