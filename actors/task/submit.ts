/**
 * Accepting a task: its record is checked and stored with its first
 * placements, and a repeated submit (same Idempotency-Key) is answered with
 * the task it made.
 *
 * @module
 */
import { serialize } from "node:v8";
import { ConflictError, ValidationError } from "../../core/errors.ts";
import { newTaskId } from "../../core/ids.ts";
import {
  type DataUseRecord,
  type SubmitKeyRecord,
  type SubmitRequest,
  type TaskRecord,
  taskSubmit,
} from "../../core/schema.ts";
import { type BatchedWrite, dataUseKey, SUBMIT_KEY_TTL_MS, submitKeyKey, taskKey } from "../../core/kv.ts";
import { liveOf, newTaskRecord, type SubmitAnswer, type TaskState } from "./state.ts";
import { resolveAfter, settleWaits } from "./after.ts";

/**
 * Largest task record accepted, V8-serialized as Deno KV stores it (a value holds 64 KiB; the record grows a little as
 * it runs: counts, times, a reason).
 */
const MAX_TASK_RECORD_BYTES = 56 * 1024;

/** Creates a task; answers once it is stored. */
async function create(s: TaskState, req: SubmitRequest): Promise<SubmitAnswer> {
  const now = s.clock.now();
  const rec = newTaskRecord(req, newTaskId(now), now);
  const after = req.spec.after ? await resolveAfter(s, req.spec.after, rec.id) : null;
  if (after) {
    rec.upstream = after.upstream;
    rec.waitingOn = after.waitingOn;
  }
  // A Deno KV value holds at most 64 KiB: a record over it would fail every commit it is in.
  const recordBytes = serialize(rec).byteLength;
  if (recordBytes > MAX_TASK_RECORD_BYTES) {
    throw new ValidationError(
      `Cannot accept task '${rec.name}' as its record would be ${recordBytes} bytes, more than the limit of ` +
        `${MAX_TASK_RECORD_BYTES}: make task.toml's [env], [matrix] or args smaller`,
      { code: "task_too_large" },
    );
  }
  // Stored by the next cycle's commit, together with its first placements: one Deno KV write
  // less before the first instance starts. The answer waits for that commit (which also
  // sends the task's first progress event).
  const live = liveOf(rec);
  s.tasks.set(rec.id, live);
  s.pending.tasks.add(live);
  // An upstream that ended while its record was read is settled once its end is stored.
  if (rec.waitingOn?.some((id) => !s.tasks.has(id))) s.pending.afterCommit.push(() => void settleWaits(s));
  const bound: BatchedWrite[] = [...after?.bound ?? []];
  if (s.audit && req.address !== undefined) {
    bound.push(s.audit.mutation({
      action: "task.submit",
      user: req.owner,
      address: req.address,
      target: rec.id,
      detail: `${rec.name}, ${rec.spec.instances} instances, ${rec.digest.slice(0, 19)}…`,
    }));
  }
  // The data set versions it was pinned to (see DataService.submitWith): in use from the moment the task exists.
  for (const [key, { name, version }] of Object.entries(req.spec.data ?? {})) {
    if (version) {
      bound.push({ key: dataUseKey(version, rec.id), value: { taskId: rec.id, name, key } satisfies DataUseRecord });
    }
  }
  if (req.key !== undefined) {
    const value: SubmitKeyRecord = { taskId: rec.id, atMs: now, digest: rec.digest, name: rec.name };
    bound.push({ key: submitKeyKey(req.owner, req.key), value, expireIn: SUBMIT_KEY_TTL_MS });
  }
  if (bound.length) live.bound = bound;
  const stored = new Promise<void>((resolve) => s.pending.afterCommit.push(resolve));
  s.kick();
  await stored;
  s.log.info("task:submitted", { taskId: rec.id, name: rec.name, instances: rec.spec.instances, owner: rec.owner });
  // The state it was accepted in: its first instances may be running already.
  return { ok: true as const, id: rec.id, state: "queued" as const, instances: rec.spec.instances };
}

/** Refuses a key used for another package or name (as the IETF Idempotency-Key draft and Stripe do). */
const sameSubmit = (req: SubmitRequest, earlier: { digest: string; name: string }, taskId?: string) => {
  if (earlier.digest === req.digest && earlier.name === req.spec.name) return;
  throw new ConflictError(
    `Cannot submit with Idempotency-Key '${req.key}' as it was used within the last day for another package or ` +
      `name${taskId ? ` (task ${taskId})` : ""}: use a new key for a new submit`,
    { code: "idempotency_key_reused" },
  );
};

/** Serves submits. */
export function serveSubmit(s: TaskState): void {
  const { kv, clock, log } = s;
  /** Submits in flight by owner and Idempotency-Key: a repeat meanwhile waits for the first. */
  const submitting = new Map<string, { digest: string; name: string; answer: Promise<SubmitAnswer> }>();

  s.bus.serve(taskSubmit, (req) => {
    log.step("task.submit");
    if (req.key === undefined) return create(s, req);
    const key = req.key;
    const k = `${req.owner}\u0000${key}`;
    const earlier = submitting.get(k);
    if (earlier) {
      sameSubmit(req, earlier);
      return earlier.answer.then((a) => ({ ...a, replayed: true }));
    }
    const answer = (async (): Promise<SubmitAnswer> => {
      const known = (await kv.get<SubmitKeyRecord>(submitKeyKey(req.owner, key))).value;
      if (known && clock.now() - known.atMs < SUBMIT_KEY_TTL_MS) {
        const rec = s.tasks.get(known.taskId)?.rec ?? (await kv.get<TaskRecord>(taskKey(known.taskId))).value;
        // A task deleted since is not answered: the submit makes a new one.
        if (rec) {
          sameSubmit(req, known, rec.id);
          return { ok: true as const, id: rec.id, state: rec.state, instances: rec.spec.instances, replayed: true };
        }
      }
      return await create(s, req);
    })();
    submitting.set(k, { digest: req.digest, name: req.spec.name, answer });
    // Once stored, Deno KV answers repeats; after a failure the next repeat tries afresh.
    const done = () => void submitting.delete(k);
    answer.then(done, done);
    return answer;
  }, { signal: s.signal });
}
