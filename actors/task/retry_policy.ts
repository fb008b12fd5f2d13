/**
 * What follows an attempt that ended without success: another attempt after a
 * backoff, a requeue (its node's trouble, which uses up no retry), or failure.
 * The one home of the backoff formula.
 *
 * @module
 */
import type { Attempt } from "../../core/schema.ts";

/** Longest wait before another attempt. */
export const MAX_BACKOFF_MS = 60_000;

/** The limits a decision follows. */
export interface RetryLimits {
  /** How many times an attempt that failed by the instance's own fault is retried: task.toml's `retries`. */
  retries: number;
  /** Most times an instance is requeued because of its node's trouble. */
  maxLostRequeues: number;
  /** First wait; it doubles per attempt, up to {@linkcode MAX_BACKOFF_MS}. */
  retryBackoffMs: number;
}

/** What to do with an instance whose last attempt ended without success. */
export type RetryDecision =
  | { action: "retry"; afterMs: number }
  | { action: "requeue"; afterMs: number }
  | { action: "fail" };

/** An attempt that ended because its node was lost or forgot it: it does not use up a retry. */
export const isLoss = (h: Attempt): boolean =>
  // Records stored before `lost` existed said so by an error worded "node …".
  h.lost ?? (h.exitCode === null && h.signal === null && (h.error?.startsWith("node ") ?? false));

/** The wait before the `n`th repeat (1-based): `baseMs`, doubling, up to {@linkcode MAX_BACKOFF_MS}. */
export const backoffMs = (baseMs: number, n: number): number => Math.min(MAX_BACKOFF_MS, baseMs * 2 ** (n - 1));

/**
 * Decides from an instance's attempts (the last one just ended without success) and the limits. A loss is requeued
 * after a backoff, without using up a retry, but a node that keeps failing it cannot loop forever; when the node is
 * gone (`nodeGone`) the instance goes back at once, as another node will take it.
 */
export function decideRetry(
  history: readonly Attempt[],
  limits: RetryLimits,
  { nodeGone = false }: { nodeGone?: boolean } = {},
): RetryDecision {
  const last = history[history.length - 1];
  if (nodeGone || (last !== undefined && isLoss(last))) {
    const lost = history.filter(isLoss).length;
    if (lost > limits.maxLostRequeues) return { action: "fail" };
    return { action: "requeue", afterMs: nodeGone ? 0 : backoffMs(limits.retryBackoffMs, lost) };
  }
  const failures = history.filter((h) => !isLoss(h)).length;
  if (failures <= limits.retries) return { action: "retry", afterMs: backoffMs(limits.retryBackoffMs, failures) };
  return { action: "fail" };
}
