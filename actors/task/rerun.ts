/**
 * Rerunning a task that ended, in place: the chosen instances get new
 * attempts in the same task (their history keeps the old ones), the task
 * runs again, and its `[finalize]` runs again once every instance succeeded.
 *
 * What did not succeed is found in the failed index (`["failed", taskId,
 * index]`, written with each instance that ends failed or cancelled), not by
 * reading every instance record; instances a cancel left never dispatched
 * (from the task's cursor on) have no record and count as cancelled.
 *
 * @module
 */
import { ConflictError, NotFoundError, ValidationError } from "../../core/errors.ts";
import {
  FINAL_STATES,
  type InstanceRecord,
  type RerunReply,
  type RerunRequest,
  type TaskRecord,
  taskRerun,
} from "../../core/schema.ts";
import { failedKey, failedOf, instanceKey, readInstances, taskKey } from "../../core/kv.ts";
import { maybeFinish, rerunRecord } from "./lifecycle.ts";
import { liveOf, markInstance, type TaskState } from "./state.ts";

/** Instance records read per Deno KV list when the failed index is incomplete. */
const SCAN_PAGE = 1000;

/** Serves reruns. */
export function serveRerun(s: TaskState): void {
  /** Tasks being rerun now: a second rerun meanwhile is refused, not doubled. */
  const busy = new Set<string>();
  s.bus.serve(taskRerun, async (req) => {
    if (s.tasks.has(req.taskId) || busy.has(req.taskId)) {
      throw new ConflictError(
        `Cannot rerun task '${req.taskId}' as it is still running: wait for it to end (parallelic wait ` +
          `${req.taskId}) or cancel it (parallelic cancel ${req.taskId})`,
        { code: "task_not_finished" },
      );
    }
    busy.add(req.taskId);
    try {
      return await rerun(s, req);
    } finally {
      busy.delete(req.taskId);
    }
  }, { signal: s.signal });
}

async function rerun(s: TaskState, req: RerunRequest): Promise<Extract<RerunReply, { ok: true }>> {
  const id = req.taskId;
  const rec = (await s.kv.get<TaskRecord>(taskKey(id))).value;
  if (!rec) throw new NotFoundError(`Cannot rerun task '${id}' as it does not exist`, { code: "task_not_found" });
  if (!FINAL_STATES.has(rec.state)) {
    throw new ConflictError(`Cannot rerun task '${id}' as it is ${rec.state}: wait for it to end`, {
      code: "task_not_finished",
    });
  }
  const n = rec.spec.instances;
  let finalize = req.finalize === true;
  const indexes = req.instances === "failed"
    ? await failedIndexes(s, rec)
    : [...new Set(req.instances ?? [])].sort((a, b) => a - b);
  const outside = indexes.find((i) => i >= n);
  if (outside !== undefined) {
    throw new ValidationError(
      `Cannot rerun instance ${outside} of task '${id}' as it has instances 0 to ${n - 1}`,
      { code: "instance_not_found" },
    );
  }
  if (req.instances === "failed" && indexes.length === 0) {
    // Every instance succeeded: what failed, if anything, was finalize.
    if (rec.spec.finalize && (rec.finalize === "failed" || rec.finalize === "cancelled")) finalize = true;
    else {
      throw new ConflictError(`Cannot rerun the failed instances of task '${id}' as every instance succeeded`, {
        code: "nothing_to_rerun",
      });
    }
  }
  if (finalize && !rec.spec.finalize) {
    throw new ValidationError(`Cannot rerun the finalize of task '${id}' as it has no [finalize] step`, {
      code: "no_finalize",
    });
  }
  if (indexes.length === 0 && !finalize) {
    throw new ValidationError(
      `Cannot rerun task '${id}' as nothing was chosen: send {"instances": "failed"}, {"instances": [3, 7]} or ` +
        `{"finalize": true}`,
      { code: "nothing_to_rerun" },
    );
  }
  if (indexes.length === 0 && rec.counts.succeeded < n) {
    throw new ConflictError(
      `Cannot rerun the finalize of task '${id}' alone as ${n - rec.counts.succeeded} of its ${n} instances did ` +
        `not succeed: rerun them (parallelic rerun ${id} --failed), and finalize runs again once they did`,
      { code: "instances_not_succeeded" },
    );
  }
  // Reads done: from here to the commit nothing awaits, so no other message sees the task half rerun.
  const [records, finalizeRec] = await Promise.all([
    readSelected(s.kv, id, indexes.filter((i) => i < rec.nextIndex)),
    rec.spec.finalize ? s.kv.get<InstanceRecord>(instanceKey(id, n)).then((e) => e.value ?? undefined) : undefined,
  ]);
  if (s.tasks.has(id)) throw new ConflictError(`Task '${id}' is being rerun already`, { code: "task_not_finished" });
  const live = liveOf(rec);
  live.storedState = rec.state;
  const c = rec.counts;
  const chosen = new Set(indexes);
  for (const index of indexes) {
    if (index >= rec.nextIndex) continue;
    const inst = records.get(index) ??
      { index, state: "cancelled", attempt: 0, node: null, notBefore: null, history: [] };
    c[inst.state as "succeeded" | "failed" | "cancelled"]--;
    c.queued++;
    live.retry.push(rerunRecord(inst));
    markInstance(s, live, inst);
    s.pending.writes.push({ key: failedKey(id, index), value: null });
  }
  reopenTail(s, rec, live, chosen);
  if (rec.spec.finalize) {
    rec.finalize = null;
    live.finalizeRec = finalizeRec;
  }
  rec.state = "running";
  rec.endedAt = null;
  rec.reason = null;
  rec.reruns = (rec.reruns ?? 0) + 1;
  // The nodes it avoided get another chance: the rerun follows a fix.
  rec.nodeFailures = {};
  rec.nodeSuccesses = {};
  rec.hint = null;
  s.tasks.set(id, live);
  s.pending.tasks.add(live);
  // With nothing but finalize to run, it is queued now.
  maybeFinish(s, live);
  const stored = new Promise<void>((resolve) => s.pending.afterCommit.push(resolve));
  s.kick();
  await stored;
  s.log.info("task:rerun", { taskId: id, by: req.by, instances: indexes.length, finalize: rec.spec.finalize !== null });
  return { ok: true as const, state: rec.state, instances: indexes.length, finalize: rec.spec.finalize !== null };
}

/**
 * The instances a cancel left never dispatched (from the cursor on): chosen ones stay on the cursor when all of them
 * are chosen; else each gets a record (the chosen queued, the others cancelled) and the cursor moves to the end.
 */
function reopenTail(s: TaskState, rec: TaskRecord, live: ReturnType<typeof liveOf>, chosen: Set<number>): void {
  const n = rec.spec.instances;
  let picked = 0;
  for (let i = rec.nextIndex; i < n; i++) if (chosen.has(i)) picked++;
  if (picked === 0) return;
  rec.counts.cancelled -= picked;
  rec.counts.queued += picked;
  if (picked === n - rec.nextIndex) return;
  for (let index = rec.nextIndex; index < n; index++) {
    const inst: InstanceRecord = {
      index,
      state: chosen.has(index) ? "queued" : "cancelled",
      attempt: 0,
      node: null,
      notBefore: null,
      history: [],
    };
    if (inst.state === "queued") live.retry.push(inst);
    else s.pending.writes.push({ key: failedKey(rec.id, index), value: true });
    markInstance(s, live, inst);
  }
  rec.nextIndex = n;
}

/** The instances of an ended task that did not succeed, in order. */
async function failedIndexes(s: TaskState, rec: TaskRecord): Promise<number[]> {
  const n = rec.spec.instances;
  const out: number[] = [];
  for await (const e of s.kv.list({ prefix: failedOf(rec.id) })) {
    const index = e.key[2] as number;
    if (index < rec.nextIndex) out.push(index);
  }
  for (let i = rec.nextIndex; i < n; i++) out.push(i);
  if (out.length >= rec.counts.failed + rec.counts.cancelled) return out;
  // A task that ended before the failed index existed: read its records, a page at a time.
  out.length = 0;
  for (let from = 0; from < rec.nextIndex; from += SCAN_PAGE) {
    const page = await readInstances(s.kv, rec.id, from, Math.min(rec.nextIndex, from + SCAN_PAGE));
    for (const inst of page.values()) if (inst.state === "failed" || inst.state === "cancelled") out.push(inst.index);
  }
  for (let i = rec.nextIndex; i < n; i++) out.push(i);
  return out.sort((a, b) => a - b);
}

/** Reads the records of `indexes` (sorted): by one range when they are dense, else ten keys at a time. */
async function readSelected(kv: Deno.Kv, id: string, indexes: number[]): Promise<Map<number, InstanceRecord>> {
  if (indexes.length === 0) return new Map();
  const from = indexes[0];
  const to = indexes[indexes.length - 1] + 1;
  if (to - from <= 4 * indexes.length) return await readInstances(kv, id, from, to);
  const out = new Map<number, InstanceRecord>();
  for (let i = 0; i < indexes.length; i += 10) {
    const got = await kv.getMany<InstanceRecord[]>(indexes.slice(i, i + 10).map((x) => instanceKey(id, x)));
    for (const e of got) if (e.value) out.set(e.value.index, e.value);
  }
  return out;
}
