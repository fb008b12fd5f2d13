import assert from "node:assert/strict";
import type { Attempt } from "../../core/schema.ts";
import { backoffMs, decideRetry, isLoss, MAX_BACKOFF_MS } from "./retry_policy.ts";

const limits = { retries: 2, maxLostRequeues: 3, retryBackoffMs: 1000 };
const attempt = (n: number, ended: Partial<Attempt>): Attempt => ({
  attempt: n,
  node: "n1",
  assignedAt: 0,
  startedAt: 0,
  endedAt: 1,
  exitCode: null,
  signal: null,
  error: null,
  ...ended,
});
const failed = (n: number) => attempt(n, { exitCode: 1, lost: false });
const lost = (n: number) => attempt(n, { error: "node n1 could not run it: timeout", lost: true });

Deno.test("the backoff doubles per attempt from its base, up to its cap", () => {
  assert.deepEqual([1, 2, 3, 4].map((n) => backoffMs(1000, n)), [1000, 2000, 4000, 8000]);
  assert.equal(backoffMs(1000, 30), MAX_BACKOFF_MS);
});

Deno.test("a failed attempt is retried after a growing backoff until the retries are used up", () => {
  assert.deepEqual(decideRetry([failed(0)], limits), { action: "retry", afterMs: 1000 });
  assert.deepEqual(decideRetry([failed(0), failed(1)], limits), { action: "retry", afterMs: 2000 });
  assert.deepEqual(decideRetry([failed(0), failed(1), failed(2)], limits), { action: "fail" });
  assert.deepEqual(decideRetry([failed(0)], { ...limits, retries: 0 }), { action: "fail" });
});

Deno.test("a loss is requeued without using up a retry, but only maxLostRequeues times", () => {
  const history = [failed(0), failed(1), lost(2)];
  assert.deepEqual(decideRetry(history, limits), { action: "requeue", afterMs: 1000 });
  assert.deepEqual(decideRetry([...history, lost(3)], limits), { action: "requeue", afterMs: 2000 });
  assert.deepEqual(decideRetry([lost(0), lost(1), lost(2), lost(3)], limits), { action: "fail" });
  // After a loss, the failures before it still count: one more failure ends it.
  assert.deepEqual(decideRetry([...history, failed(3)], limits), { action: "fail" });
});

Deno.test("a gone node's instances go back at once", () => {
  assert.deepEqual(decideRetry([failed(0), lost(1)], limits, { nodeGone: true }), { action: "requeue", afterMs: 0 });
  assert.deepEqual(decideRetry([lost(0), lost(1), lost(2), lost(3)], limits, { nodeGone: true }), { action: "fail" });
});

Deno.test("an attempt without 'lost' (an older node) is a loss when its error says 'node …'", () => {
  assert.equal(isLoss(attempt(0, { error: "node n1 lost (no heartbeat for its lease)" })), true);
  assert.equal(isLoss(attempt(0, { error: "could not store outputs" })), false);
  assert.equal(isLoss(attempt(0, { exitCode: 1, error: "node n1 said" })), false);
  assert.equal(isLoss(attempt(0, { error: "node n1 could not run it", lost: false })), false);
});
