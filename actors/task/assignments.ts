/**
 * What each node holds now, as the object service asks it: a node may reach
 * the objects of these tasks and instances, and no others.
 *
 * @module
 */
import type { AssignmentView, HeldTask } from "../object_service.ts";
import type { TaskState } from "./state.ts";

/** The task actor's answer to "what does this node hold now?". */
export function assignmentView(s: TaskState): AssignmentView {
  return {
    attemptOf(node, taskId, index) {
      const f = s.tasks.get(taskId)?.flights.get(index);
      return f && f.node === node ? f.rec.attempt : null;
    },
    tasksOf(node) {
      const held = new Map<string, HeldTask>();
      for (const f of s.nodes.get(node)?.flights ?? []) {
        const { rec } = f.live;
        if (held.has(rec.id)) continue;
        const dataVersions = Object.values(rec.spec.data).flatMap((d) => d.version ? [d.version] : []);
        const upstream = (rec.upstream ?? []).map((u) => u.taskId);
        held.set(rec.id, { taskId: rec.id, digest: rec.digest, instances: rec.spec.instances, dataVersions, upstream });
      }
      return [...held.values()];
    },
  };
}
