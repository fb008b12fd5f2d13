/**
 * The tasks a submit waits for: task.toml's `[after] tasks`, and those
 * `?after=ID,ID` adds (what `parallelic submit --after` sends), each one the
 * submitter may see.
 *
 * @module
 */
import { NotFoundError, ValidationError } from "../core/errors.ts";
import { TaskId, type TaskRecord, type TaskSpec } from "../core/schema.ts";
import { MAX_AFTER } from "../core/task_toml.ts";

/**
 * Merges `?after=` into task.toml's `[after]` and checks that the submitter
 * may see every task named (a task of another user is refused as missing).
 *
 * @throws {ValidationError} Naming the id that is not a task id or not a task the submitter may see.
 */
export async function afterOf(
  after: TaskSpec["after"],
  query: string | undefined,
  load: (id: string) => Promise<TaskRecord>,
): Promise<TaskSpec["after"]> {
  const extra = (query ?? "").split(",").map((id) => id.trim()).filter((id) => id !== "");
  for (const id of extra) {
    if (!TaskId.safeParse(id).success) {
      throw new ValidationError(`Cannot submit with after '${id}' as it is not a task id (t and 16 of 0-9 a-z)`, {
        code: "invalid_after",
      });
    }
  }
  const tasks = [...new Set([...after?.tasks ?? [], ...extra])];
  if (tasks.length === 0) return after;
  if (tasks.length > MAX_AFTER) {
    throw new ValidationError(`Cannot submit as it waits for ${tasks.length} tasks, more than ${MAX_AFTER}`, {
      code: "invalid_after",
    });
  }
  for (const id of tasks) {
    try {
      await load(id);
    } catch (e) {
      if (!(e instanceof NotFoundError)) throw e;
      throw new ValidationError(`Cannot submit as it waits for task '${id}', which does not exist`, {
        code: "upstream_not_found",
      });
    }
  }
  return { tasks, when: after?.when ?? "succeeded" };
}
