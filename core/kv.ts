/**
 * Deno KV keys, declared once. Values are the records of `core/schema.ts`.
 *
 * @module
 */
import type { AssignSpan, InstanceRecord, State } from "./schema.ts";

/** `["task", id]` → TaskRecord */
export const taskKey = (id: string): Deno.KvKey => ["task", id];
/** Prefix of every task. */
export const TASKS: Deno.KvKey = ["task"];
/**
 * `["task-count", state, owner]` → Deno.KvU64: how many tasks of `owner` are in `state`. Changed in the same atomic as
 * the task record it counts (see {@linkcode taskCountChange}), so a list can tell its total without reading every task.
 */
export const taskCountKey = (state: State, owner: string): Deno.KvKey => ["task-count", state, owner];
/** Prefix of every task counter. */
export const TASK_COUNTS: Deno.KvKey = ["task-count"];
/** `["task-count-ready"]` → true: the counters stand for every task (set once, by the first count over all of them). */
export const TASK_COUNTS_READY: Deno.KvKey = ["task-count-ready"];

/**
 * The counter writes for a task of `owner` going from state `from` to `to` (null: not stored before / deleted), each
 * bound to the write after it: put them right before the task record's write.
 */
export function taskCountChange(owner: string, from: State | null, to: State | null): BatchedWrite[] {
  if (from === to) return [];
  const out: BatchedWrite[] = [];
  if (from) out.push({ key: taskCountKey(from, owner), value: null, add: -1, withNext: true });
  if (to) out.push({ key: taskCountKey(to, owner), value: null, add: 1, withNext: true });
  return out;
}

/** The writes that delete a task's record, its counter moving in the same atomic: put them last. */
export function taskDeletion(task: { id: string; owner: string; state: State }): BatchedWrite[] {
  return [...taskCountChange(task.owner, task.state, null), { key: taskKey(task.id), value: null }];
}

/**
 * How many tasks there are (of `state`, of `owner`, when given), from the counters: as many reads as there are
 * states × owners, whatever the number of tasks. Null until the counters stand for every task.
 */
export async function countTasks(kv: Deno.Kv, filter: { state?: State; owner?: string }): Promise<number | null> {
  if (!(await kv.get(TASK_COUNTS_READY)).value) return null;
  let n = 0n;
  const prefix = filter.state ? [...TASK_COUNTS, filter.state] : TASK_COUNTS;
  for await (const e of kv.list<Deno.KvU64>({ prefix })) {
    if (filter.owner === undefined || e.key[2] === filter.owner) n = BigInt.asIntN(64, n + e.value.value);
  }
  return Number(n < 0n ? 0n : n);
}

/** `["submit-key", owner, key]` → SubmitKeyRecord: which task a submit with that Idempotency-Key made. */
export const submitKeyKey = (owner: string, key: string): Deno.KvKey => ["submit-key", owner, key];
/** How long a submit's Idempotency-Key is remembered. */
export const SUBMIT_KEY_TTL_MS = 24 * 60 * 60 * 1000;
/** `["instance", taskId, index]` → InstanceRecord */
export const instanceKey = (taskId: string, index: number): Deno.KvKey => ["instance", taskId, index];
/** Prefix of a task's instances. */
export const instancesOf = (taskId: string): Deno.KvKey => ["instance", taskId];
/** `["failed", taskId, index]` → true: an instance that ended failed or cancelled (a rerun finds them here). */
export const failedKey = (taskId: string, index: number): Deno.KvKey => ["failed", taskId, index];
/** Prefix of a task's failed instances. */
export const failedOf = (taskId: string): Deno.KvKey => ["failed", taskId];
/** `["span", taskId, from]` → AssignSpan */
export const spanKey = (taskId: string, from: number): Deno.KvKey => ["span", taskId, from];
/** Prefix of a task's assignment spans. */
export const spansOf = (taskId: string): Deno.KvKey => ["span", taskId];
/** `["node", name]` → NodeRecord */
export const nodeKey = (name: string): Deno.KvKey => ["node", name];
/** Prefix of every node. */
export const NODES: Deno.KvKey = ["node"];
/** `["token", sha256hex]` → TokenRecord */
export const tokenKey = (hash: string): Deno.KvKey => ["token", hash];

/** The record of an instance that runs its first attempt under `span` (it has no record of its own yet). */
export function spanInstance(span: AssignSpan, index: number): InstanceRecord {
  return {
    index,
    state: "running",
    attempt: 0,
    node: span.node,
    notBefore: null,
    history: [{
      attempt: 0,
      node: span.node,
      assignedAt: span.assignedAt,
      startedAt: null,
      endedAt: null,
      exitCode: null,
      signal: null,
      error: null,
    }],
  };
}

/**
 * Reads what Deno KV holds of instances `from` to `to - 1` of a task: each
 * one's own record or, while its first attempt runs, the one its span stands
 * for. Instances never dispatched are absent.
 */
export async function readInstances(
  kv: Deno.Kv,
  taskId: string,
  from: number,
  to: number,
): Promise<Map<number, InstanceRecord>> {
  const records = new Map<number, InstanceRecord>();
  const spans: AssignSpan[] = [];
  // Spans never overlap: the one that starts last before `from`, then those that start inside.
  for await (
    const e of kv.list<AssignSpan>({ prefix: spansOf(taskId), end: spanKey(taskId, from) }, { reverse: true, limit: 1 })
  ) {
    spans.push(e.value);
  }
  for await (const e of kv.list<AssignSpan>({ start: spanKey(taskId, from), end: spanKey(taskId, to) })) {
    spans.push(e.value);
  }
  for (const span of spans) {
    for (let i = Math.max(from, span.from); i < Math.min(to, span.to); i++) records.set(i, spanInstance(span, i));
  }
  for await (const e of kv.list<InstanceRecord>({ start: instanceKey(taskId, from), end: instanceKey(taskId, to) })) {
    records.set(e.value.index, e.value);
  }
  return records;
}

/** Deno KV allows 1000 mutations per atomic; stay well below, and below its 800 KiB size cap. */
export const MAX_MUTATIONS_PER_ATOMIC = 500;
/** Bytes of values per atomic we aim to stay under. */
export const MAX_BYTES_PER_ATOMIC = 512 * 1024;
/** Deno KV's cap on one value (serialized): a commit of a few entries cannot reach {@linkcode MAX_BYTES_PER_ATOMIC}. */
const MAX_VALUE_BYTES = 64 * 1024;

/** One write of {@linkcode writeBatched}. */
export interface BatchedWrite {
  key: Deno.KvKey;
  /** The value, or null to delete. */
  value: unknown | null;
  /** Adds this (may be negative) to the `Deno.KvU64` counter at `key` instead (`value` is not used). */
  add?: number;
  expireIn?: number;
  /** Lands in the same atomic as the entry after it (an audit entry and what it audits); chains may be longer. */
  withNext?: boolean;
}

/**
 * Writes `entries` in as few atomics as the limits allow, in order (so the
 * last entries land last: put the task records there). Every value is
 * serialized before the first commit is awaited, so callers may change their
 * objects as soon as this returns a promise: no copy is needed. `onStored`
 * hears, after each atomic, how many entries (from the first) are stored: a
 * failure part way leaves those stored.
 */
export async function writeBatched(
  kv: Deno.Kv,
  entries: Iterable<BatchedWrite>,
  onStored?: (entries: number) => void,
): Promise<number> {
  const ops: Deno.AtomicOperation[] = [];
  /** Entries up to each atomic's last. */
  const ends: number[] = [];
  let op = kv.atomic();
  let count = 0;
  let bytes = 0;
  const list = [...entries];
  // Sized once each, when needed (a chain of bound entries is looked ahead from its first).
  const sizes: number[] = [];
  const sizeOf = (i: number) => {
    const v = list[i].value;
    return sizes[i] ??= v === null ? 0 : v instanceof Deno.KvU64 ? 64 : JSON.stringify(v).length + 64;
  };
  /** Set once the entries left fit the byte cap whatever their size (as in a commit of a few entries). */
  let fewLeft = false;
  for (let i = 0; i < list.length; i++) {
    const { key, value, expireIn, add } = list[i];
    fewLeft ||= bytes + (list.length - i) * (MAX_VALUE_BYTES + 64) <= MAX_BYTES_PER_ATOMIC;
    const size = fewLeft ? 0 : sizeOf(i);
    const joined = i > 0 && list[i - 1].withNext;
    // Entries bound together (each to the next) start a new atomic unless all of them fit.
    let need = 1;
    let needBytes = size;
    for (let j = i; !joined && list[j].withNext && j + 1 < list.length; j++) {
      need++;
      needBytes += fewLeft ? 0 : sizeOf(j + 1);
    }
    if (
      !joined && count > 0 && (count + need > MAX_MUTATIONS_PER_ATOMIC || bytes + needBytes > MAX_BYTES_PER_ATOMIC)
    ) {
      ops.push(op);
      ends.push(i);
      op = kv.atomic();
      count = 0;
      bytes = 0;
    }
    if (add !== undefined) op.sum(key, BigInt.asUintN(64, BigInt(add)));
    else if (value === null) op.delete(key);
    else op.set(key, value, expireIn === undefined ? undefined : { expireIn });
    count++;
    bytes += size;
  }
  if (count > 0) {
    ops.push(op);
    ends.push(list.length);
  }
  for (const [n, op] of ops.entries()) {
    const res = await op.commit();
    if (!res.ok) throw new Error("Deno KV atomic commit failed");
    onStored?.(ends[n]);
  }
  return ops.length;
}

/** `["user", name]` → UserRecord (gateway/auth.ts) */
export const userKey = (name: string): Deno.KvKey => ["user", name];
/** Prefix of every user. */
export const USERS: Deno.KvKey = ["user"];
/** `["audit", atMs, random]` → AuditEntry (core/audit.ts), oldest first. */
export const auditKey = (atMs: number, id: string): Deno.KvKey => ["audit", atMs, id];
/** Prefix of the audit log. */
export const AUDIT: Deno.KvKey = ["audit"];
/** `["natsnode", name]` → NatsNodeRecord (manager/nats_users.ts): the nkey a node joined with. */
export const natsNodeKey = (name: string): Deno.KvKey => ["natsnode", name];
/** Prefix of every joined node's nkey. */
export const NATS_NODES: Deno.KvKey = ["natsnode"];
/** `["data", name, version]` → DataVersionRecord */
export const dataVersionKey = (name: string, version: string): Deno.KvKey => ["data", name, version];
/** Prefix of a data set's versions. */
export const dataVersionsOf = (name: string): Deno.KvKey => ["data", name];
/** Prefix of every data set version. */
export const DATA_VERSIONS: Deno.KvKey = ["data"];
/** `["data-set", name]` → DataSetRecord (owner, shared) */
export const dataSetKey = (name: string): Deno.KvKey => ["data-set", name];
/** `["data-bytes", name]` → number: bytes of distinct content across a data set's versions. */
export const dataBytesKey = (name: string): Deno.KvKey => ["data-bytes", name];
/** `["data-use", version, taskId]` → DataUseRecord */
export const dataUseKey = (version: string, taskId: string): Deno.KvKey => ["data-use", version, taskId];
/** Prefix of the tasks that use a data set version. */
export const dataUsesOf = (version: string): Deno.KvKey => ["data-use", version];

/** `["after", upstream, dependent]`: task `dependent` waits for (or read the workspace of) task `upstream`. */
export const afterKey = (upstream: string, dependent: string): Deno.KvKey => ["after", upstream, dependent];
/** The tasks that name `upstream` in their `[after]`. */
export const dependentsOf = (upstream: string): Deno.KvKey => ["after", upstream];

/** `["notify-outbox", taskId]` → NotifyOutbox (core/notify.ts): a notification owed, until delivered or given up. */
export const notifyOutboxKey = (taskId: string): Deno.KvKey => ["notify-outbox", taskId];
/** Prefix of every notification owed. */
export const NOTIFY_OUTBOX: Deno.KvKey = ["notify-outbox"];
/** `["notify", taskId]` → NotifyStatus (core/notify.ts): a task's latest notification and its tries. */
export const notifyKey = (taskId: string): Deno.KvKey => ["notify", taskId];
