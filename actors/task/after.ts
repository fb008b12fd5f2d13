/**
 * Tasks that wait for tasks (`[after]`): a dependent is placed once every
 * task it names has ended as `when` asks, and is cancelled, naming it, when
 * one ends otherwise. Its instances then read the upstream workspaces.
 *
 * @module
 */
import { ConflictError, ValidationError } from "../../core/errors.ts";
import { FINAL_STATES, type State, type TaskRecord, type TaskSpec, type UpstreamRef } from "../../core/schema.ts";
import { afterKey, type BatchedWrite, taskKey } from "../../core/kv.ts";
import { cancelTask } from "./lifecycle.ts";
import type { Live, TaskState } from "./state.ts";

/** Does an upstream that ended `state` let a dependent with `when` go on? */
const satisfies = (when: "succeeded" | "ended", state: State) => when === "ended" || state === "succeeded";

/** Reads a task from memory or, once ended, from Deno KV. */
async function taskOf(s: TaskState, id: string): Promise<TaskRecord | null> {
  return s.tasks.get(id)?.rec ?? (await s.kv.get<TaskRecord>(taskKey(id))).value;
}

/**
 * Resolves a new task's `[after]`: the upstream tasks as its instances need
 * them, those it still waits for, and the index entries that tie it to them.
 *
 * @throws {ValidationError} When a task it names does not exist.
 * @throws {ConflictError} When one ended already otherwise than `when` asks.
 */
export async function resolveAfter(
  s: TaskState,
  after: NonNullable<TaskSpec["after"]>,
  dependent: string,
): Promise<{ upstream: UpstreamRef[]; waitingOn: string[]; bound: BatchedWrite[] }> {
  const upstream: UpstreamRef[] = [];
  const waitingOn: string[] = [];
  const bound: BatchedWrite[] = [];
  for (const id of after.tasks) {
    const rec = await taskOf(s, id);
    if (!rec) {
      throw new ValidationError(`Cannot submit as [after] names task '${id}', which does not exist`, {
        code: "upstream_not_found",
      });
    }
    if (FINAL_STATES.has(rec.state) && !satisfies(after.when, rec.state)) {
      throw new ConflictError(
        `Cannot submit as task '${id}' named in [after] ended ${rec.state} and when = "succeeded": ` +
          `submit without it, or with when = "ended"`,
        { code: "upstream_ended" },
      );
    }
    if (!FINAL_STATES.has(rec.state)) waitingOn.push(id);
    upstream.push({ taskId: id, instances: rec.spec.instances, finalize: rec.spec.finalize !== null });
    bound.push({ key: afterKey(id, dependent), value: { taskId: dependent } });
  }
  return { upstream, waitingOn, bound };
}

/** Goes on with, or cancels, the live tasks waiting for `id`, which just ended `state`. */
export function releaseDependents(s: TaskState, id: string, state: State): void {
  for (const live of [...s.tasks.values()]) {
    if (live.rec.waitingOn?.includes(id)) settle(s, live, id, state);
  }
}

function settle(s: TaskState, live: Live, id: string, state: State | null): void {
  const when = live.rec.spec.after?.when ?? "succeeded";
  if (state !== null && satisfies(when, state)) {
    live.rec.waitingOn = (live.rec.waitingOn ?? []).filter((w) => w !== id);
    s.pending.tasks.add(live);
    s.kick();
    return;
  }
  const why = state === null ? `task ${id} it waits for was deleted` : `task ${id} it waits for ended ${state}`;
  cancelTask(s, live, `task ${id}`, `cancelled: ${why} (when = "${when}")`);
}

/** After a restart: settles the waits on tasks that ended (or went) while the manager was down. */
export async function settleWaits(s: TaskState): Promise<void> {
  for (const live of [...s.tasks.values()]) {
    for (const id of [...live.rec.waitingOn ?? []]) {
      if (!s.tasks.has(live.rec.id) || s.tasks.has(id)) continue;
      settle(s, live, id, (await taskOf(s, id))?.state ?? null);
    }
  }
}
