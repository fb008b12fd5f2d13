/**
 * Task notifications (`[notify]` in task.toml): what the manager owes a
 * webhook when a task ends, what it sends, how it signs it and what it
 * keeps of each try. The delivery itself is `services/notify.ts`.
 *
 * A notification is signed with HMAC-SHA256 under the manager's notify
 * secret, over `<timestamp>.<raw body>`: the timestamp (Unix seconds, in
 * {@linkcode TIMESTAMP_HEADER}) is part of what is signed, so a receiver that
 * refuses old timestamps refuses a replayed request.
 *
 * @module
 */
import { z } from "zod";
import { Counts, type NotifyOn, State, TaskId } from "./schema.ts";
export { notifyLine } from "./notify_line.ts";

/** Longest `[notify] url`, in characters. */
export const MAX_NOTIFY_URL_CHARS = 2048;
/** The states a webhook is told of when `[notify] on` is not given. */
export const DEFAULT_NOTIFY_ON: readonly NotifyOn[] = ["failed", "succeeded"];
/** Most failed instance indexes a notification lists (`failedInstancesMore` counts the rest). */
export const MAX_NOTIFIED_FAILURES = 100;
/** Header holding `sha256=<hex>`: the HMAC-SHA256 of `<timestamp>.<body>`. */
export const SIGNATURE_HEADER = "X-Parallelic-Signature";
/** Header holding the Unix time, in seconds, the request was signed at. */
export const TIMESTAMP_HEADER = "X-Parallelic-Timestamp";
/** Header naming the notification: the same on every try of it, so a receiver can drop one it already has. */
export const DELIVERY_HEADER = "X-Parallelic-Delivery";

/** What is wrong with a webhook URL, or null: http(s), no user or password in it, not too long. */
export function notifyUrlProblem(text: string): string | null {
  if (text.length > MAX_NOTIFY_URL_CHARS) return `a URL is at most ${MAX_NOTIFY_URL_CHARS} characters`;
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    return 'not a URL (e.g. "https://hooks.example.com/parallelic")';
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") return `a webhook URL is http:// or https://`;
  if (url.username || url.password) return "a webhook URL holds no user or password: put a token in its path";
  return null;
}

/** What a webhook is sent: the task's summary when it ended. */
export const NotifyPayload = z.object({
  event: z.literal("task.ended"),
  /** Names this notification: the same on every try (also in {@linkcode DELIVERY_HEADER}). */
  delivery: z.string(),
  task: z.object({
    id: TaskId,
    name: z.string(),
    owner: z.string(),
    state: State,
    reason: z.string().nullable(),
    instances: z.number().int(),
    counts: Counts,
    createdAt: z.number(),
    startedAt: z.number().nullable(),
    endedAt: z.number(),
    /** The task's page in the web UI, when the manager knows its public URL (`--public-url`). */
    link: z.string().nullable(),
  }),
  /** Indexes of instances that failed or were cancelled, the first {@linkcode MAX_NOTIFIED_FAILURES}. */
  failedInstances: z.array(z.number().int().nonnegative()),
  /** How many more failed or cancelled instances there are than listed. */
  failedInstancesMore: z.number().int().nonnegative(),
});
/** A notification's body. */
export type NotifyPayload = z.infer<typeof NotifyPayload>;

/**
 * `["notify-outbox", taskId]`: a notification owed. Written in the same
 * atomic as the task's final record, deleted once delivered or given up:
 * what a manager restart finds here is still sent.
 */
export const NotifyOutbox = z.object({
  url: z.string(),
  /** The summary (without the failed indexes, which are read at the first try). */
  task: NotifyPayload.shape.task,
  /** Tries made so far. */
  tries: z.number().int().nonnegative(),
  /** When the next try is due. */
  nextAt: z.number(),
  /** The body as first sent: every retry sends the same bytes. Null until the first try. */
  body: z.string().nullable(),
});
/** A notification owed. */
export type NotifyOutbox = z.infer<typeof NotifyOutbox>;

const hex = (bytes: ArrayBuffer) => Array.from(new Uint8Array(bytes), (b) => b.toString(16).padStart(2, "0")).join("");

/** `sha256=<hex>`: the HMAC-SHA256 under `secret` of `<timestamp>.<body>`, as {@linkcode SIGNATURE_HEADER} holds. */
export async function signNotification(secret: string, timestampS: number, body: string): Promise<string> {
  const enc = new TextEncoder();
  const key = await crypto.subtle.importKey("raw", enc.encode(secret), { name: "HMAC", hash: "SHA-256" }, false, [
    "sign",
  ]);
  return `sha256=${hex(await crypto.subtle.sign("HMAC", key, enc.encode(`${timestampS}.${body}`)))}`;
}

/**
 * Whether a notification is genuine: its signature matches and its
 * timestamp is within `toleranceS` of now (what a receiver does).
 */
export async function verifyNotification(
  secret: string,
  headers: Headers,
  body: string,
  { nowMs = Date.now(), toleranceS = 300 } = {},
): Promise<boolean> {
  const timestamp = Number(headers.get(TIMESTAMP_HEADER));
  const given = headers.get(SIGNATURE_HEADER) ?? "";
  if (!Number.isInteger(timestamp) || Math.abs(nowMs / 1000 - timestamp) > toleranceS) return false;
  const expected = await signNotification(secret, timestamp, body);
  // Compared in full whatever differs, so the time taken tells nothing.
  let diff = given.length ^ expected.length;
  for (let i = 0; i < expected.length; i++) diff |= expected.charCodeAt(i) ^ given.charCodeAt(i);
  return diff === 0;
}
