/**
 * The audit log: who submitted, cancelled or deleted a task, who changed
 * users, tokens and nodes, and who failed to authenticate, with the time and
 * the address. Kept in Deno KV (`["audit", atMs, id]`, expiring after the
 * retention) and written to the structured log as `audit` lines.
 *
 * @module
 */
import { z } from "zod";
import { AUDIT, auditKey } from "./kv.ts";
import type { Logger } from "./log.ts";

/** What was done. */
export const AuditAction = z.enum([
  "auth.failed",
  "task.submit",
  "task.cancel",
  "task.delete",
  "task.rerun",
  "task.update",
  "user.add",
  "user.remove",
  "user.role",
  "token.rotate",
  "node.join",
  "node.join-refused",
  "node.forget",
  "node.drain",
  "node.resume",
  "join-token.read",
  "join-token.rotate",
  "data.share",
  "bus.rejected",
  "object.refused",
  "logs.dropped",
]);
/** An audited action. */
export type AuditAction = z.infer<typeof AuditAction>;

/** `["audit", atMs, id]`: one audited event. */
export const AuditEntry = z.object({
  at: z.number(),
  action: AuditAction,
  /** The user who did it (null when nobody authenticated). */
  user: z.string().nullable(),
  /** Where the request came from (`127.0.0.1`, or `nats` for a node's join). */
  address: z.string(),
  /** What it was done to: a task id, a user or node name. */
  target: z.string().nullable(),
  /** Anything else worth keeping (why it was refused, the role given, …). */
  detail: z.string().nullable(),
});
/** An audited event. */
export type AuditEntry = z.infer<typeof AuditEntry>;

/** An event to audit: the time is filled in. */
export type AuditInput = Omit<AuditEntry, "at" | "target" | "detail"> & Partial<Pick<AuditEntry, "target" | "detail">>;

/** How long audit entries are kept by default: 90 days. */
export const DEFAULT_AUDIT_RETENTION_MS = 90 * 24 * 3600 * 1000;

/** Writes audit entries to Deno KV and the log. */
export interface AuditLog {
  /** Records an event (time filled in). Never throws: a failed write is logged. */
  record(entry: AuditInput): Promise<void>;
  /**
   * Logs an event and returns its Deno KV write, for a caller that commits it
   * together with what it audits (the task actor stores a submitted task and
   * its audit entry in one atomic).
   */
  mutation(entry: AuditInput): { key: Deno.KvKey; value: AuditEntry; expireIn: number };
  /** Newest first, at most `limit`, older than `beforeMs` when given. */
  list(options?: { limit?: number; beforeMs?: number }): Promise<AuditEntry[]>;
  /** A page of entries newest first, filtered; see {@linkcode AuditQuery}. */
  page(query: AuditQuery): Promise<AuditPage>;
}

/** What {@linkcode AuditLog.page} reads. */
export interface AuditQuery {
  /** At most this many entries. */
  limit: number;
  /** Only entries older than this cursor (a page's `next`). */
  cursor?: string;
  /** Only entries older than this time (ms). */
  beforeMs?: number;
  /** Only this user's entries. */
  user?: string;
  /** Only entries of this action. */
  action?: AuditAction;
  /** Reads at most this many entries (a filter that matches rarely still answers soon). @default {5000} */
  maxScan?: number;
}

/** A page of the audit log. */
export interface AuditPage {
  entries: AuditEntry[];
  /** Give it as `cursor` for the next (older) page; null after the oldest entry. */
  next: string | null;
}

/** The cursor of the entry at `key` (`["audit", atMs, id]`): `atMs.id`. */
const cursorOf = (key: Deno.KvKey) => `${String(key[1])}.${String(key[2])}`;

/** The key a cursor stands for, or null when it is not one. */
export function auditCursorKey(cursor: string): Deno.KvKey | null {
  const m = /^(\d{1,16})\.([0-9a-f-]{1,36})$/.exec(cursor);
  return m ? auditKey(Number(m[1]), m[2]) : null;
}

/** Creates the audit log over `kv`. */
export function createAuditLog(
  kv: Deno.Kv,
  log: Logger,
  options: { retentionMs?: number; now?: () => number } = {},
): AuditLog {
  const retentionMs = options.retentionMs ?? DEFAULT_AUDIT_RETENTION_MS;
  const now = options.now ?? Date.now;
  const alog = log.scope({ actor: "audit" });
  const mutation = (e: AuditInput) => {
    const value: AuditEntry = { at: now(), target: null, detail: null, ...e };
    alog.info("audit", value);
    return { key: auditKey(value.at, crypto.randomUUID().slice(0, 8)), value, expireIn: retentionMs };
  };
  return {
    async record(e) {
      const { key, value, expireIn } = mutation(e);
      try {
        await kv.set(key, value, { expireIn });
      } catch (err) {
        alog.error("audit:write-failed", { error: String(err), ...value });
      }
    },
    mutation,
    async list({ limit = 100, beforeMs } = {}) {
      const out: AuditEntry[] = [];
      const selector = beforeMs === undefined ? { prefix: AUDIT } : { prefix: AUDIT, end: [...AUDIT, beforeMs] };
      for await (const e of kv.list<AuditEntry>(selector, { reverse: true, limit })) out.push(e.value);
      return out;
    },
    async page({ limit, cursor, beforeMs, user, action, maxScan = 5000 }) {
      const end = cursor === undefined ? undefined : auditCursorKey(cursor);
      const selector = end
        ? { prefix: AUDIT, end }
        : beforeMs === undefined
        ? { prefix: AUDIT }
        : { prefix: AUDIT, end: [...AUDIT, beforeMs] };
      const entries: AuditEntry[] = [];
      let scanned = 0;
      let last: Deno.KvKey | null = null;
      for await (const e of kv.list<AuditEntry>(selector, { reverse: true, batchSize: 500 })) {
        if (entries.length >= limit || scanned >= maxScan) return { entries, next: last && cursorOf(last) };
        scanned++;
        last = e.key;
        if (user !== undefined && e.value.user !== user) continue;
        if (action !== undefined && e.value.action !== action) continue;
        entries.push(e.value);
      }
      return { entries, next: null };
    },
  };
}

/**
 * Records at most `perMinute` entries a minute through `audit`; past that,
 * entries are counted and one entry at the end of the minute tells how many
 * were left out. A flood of bad messages cannot fill Deno KV.
 */
export function rateLimitedAudit(
  audit: Pick<AuditLog, "record">,
  options: { perMinute?: number; now?: () => number } = {},
): (entry: AuditInput) => void {
  const perMinute = options.perMinute ?? 60;
  const now = options.now ?? Date.now;
  let windowStart = -Infinity;
  let recorded = 0;
  let dropped: AuditInput | null = null;
  let droppedCount = 0;
  return (entry) => {
    const at = now();
    if (at - windowStart >= 60_000) {
      if (dropped) {
        void audit.record({ ...dropped, detail: `${droppedCount} more like this one in a minute were not recorded` });
      }
      windowStart = at;
      recorded = 0;
      dropped = null;
      droppedCount = 0;
    }
    if (recorded < perMinute) {
      recorded++;
      void audit.record(entry);
    } else {
      dropped ??= entry;
      droppedCount++;
    }
  };
}
