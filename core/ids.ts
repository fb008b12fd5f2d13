/**
 * Identifiers.
 *
 * @module
 */
import { createHash } from "node:crypto";
import type { TaskId } from "./schema.ts";

/**
 * Makes a task id: `t`, the time in base 36 (10 chars, so ids sort by time),
 * then 6 random base-36 chars.
 */
export function newTaskId(nowMs: number): TaskId {
  const time = nowMs.toString(36).padStart(10, "0").slice(-10);
  const bytes = crypto.getRandomValues(new Uint8Array(6));
  const rand = Array.from(bytes, (b) => (b % 36).toString(36)).join("");
  return `t${time}${rand}`;
}

/** A random token of `bytes` bytes, URL-safe base64 without padding. */
export function randomToken(bytes = 32): string {
  const raw = crypto.getRandomValues(new Uint8Array(bytes));
  return btoa(String.fromCharCode(...raw)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Hex SHA-256 (node:crypto: on the calling thread, no thread-pool round trip; for small inputs). */
export function sha256Hex(data: string | Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}
