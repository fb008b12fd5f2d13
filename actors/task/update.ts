/**
 * Live changes to a task that has not ended: its priority (placement reads
 * it at the next cycle), and holding it (nothing new of it is dispatched,
 * what runs goes on) or releasing it.
 *
 * @module
 */
import { ConflictError, NotFoundError } from "../../core/errors.ts";
import { type TaskRecord, taskUpdate } from "../../core/schema.ts";
import { taskKey } from "../../core/kv.ts";
import type { TaskState } from "./state.ts";

/** Serves live changes. */
export function serveUpdate(s: TaskState): void {
  s.bus.serve(taskUpdate, async (req) => {
    const live = s.tasks.get(req.taskId);
    if (!live) {
      const stored = (await s.kv.get<TaskRecord>(taskKey(req.taskId))).value;
      if (!stored) {
        throw new NotFoundError(`Cannot change task '${req.taskId}' as it does not exist`, { code: "task_not_found" });
      }
      throw new ConflictError(
        `Cannot change task '${req.taskId}' as it ended ${stored.state}: rerun it first (parallelic rerun ` +
          `${req.taskId})`,
        { code: "task_ended" },
      );
    }
    const rec = live.rec;
    if (req.priority !== undefined) rec.spec.priority = req.priority;
    if (req.held !== undefined) rec.held = req.held;
    s.pending.tasks.add(live);
    const stored = new Promise<void>((resolve) => s.pending.afterCommit.push(resolve));
    s.kick();
    await stored;
    s.log.info("task:updated", { taskId: rec.id, by: req.by, priority: rec.spec.priority, held: rec.held });
    return { ok: true as const, state: rec.state, priority: rec.spec.priority, held: rec.held };
  }, { signal: s.signal });
}
