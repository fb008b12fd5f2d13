import assert from "node:assert/strict";
import {
  notifyLine,
  notifyUrlProblem,
  SIGNATURE_HEADER,
  signNotification,
  TIMESTAMP_HEADER,
  verifyNotification,
} from "./notify.ts";
import type { NotifyView } from "./schema.ts";

Deno.test("a signature is HMAC-SHA256 over '<timestamp>.<body>', as a receiver computes it with node:crypto", async () => {
  const { createHmac } = await import("node:crypto");
  const body = '{"event":"task.ended"}';
  const expected = createHmac("sha256", "s3cret-s3cret-s3cret").update(`1700000000.${body}`).digest("hex");
  assert.equal(await signNotification("s3cret-s3cret-s3cret", 1700000000, body), `sha256=${expected}`);
});

Deno.test("verifyNotification takes the genuine request and refuses another body, secret or an old timestamp", async () => {
  const nowMs = 1_700_000_000_000;
  const body = '{"a":1}';
  const headers = new Headers({
    [SIGNATURE_HEADER]: await signNotification("k".repeat(20), nowMs / 1000, body),
    [TIMESTAMP_HEADER]: String(nowMs / 1000),
  });
  assert.equal(await verifyNotification("k".repeat(20), headers, body, { nowMs }), true);
  assert.equal(await verifyNotification("k".repeat(20), headers, '{"a":2}', { nowMs }), false);
  assert.equal(await verifyNotification("j".repeat(20), headers, body, { nowMs }), false);
  assert.equal(await verifyNotification("k".repeat(20), headers, body, { nowMs: nowMs + 301_000 }), false);
  headers.delete(TIMESTAMP_HEADER);
  assert.equal(await verifyNotification("k".repeat(20), headers, body, { nowMs }), false);
});

Deno.test("notifyUrlProblem takes http(s) URLs without credentials, up to 2048 characters", () => {
  assert.equal(notifyUrlProblem("https://hooks.example.com/x?token=1"), null);
  assert.match(notifyUrlProblem("gopher://x")!, /http:\/\/ or https:\/\//);
  assert.match(notifyUrlProblem("not a url")!, /not a URL/);
  assert.match(notifyUrlProblem("https://u:p@h.example/")!, /no user or password/);
  assert.match(notifyUrlProblem(`https://h.example/${"a".repeat(2048)}`)!, /at most 2048/);
});

Deno.test("notifyLine says where a notification stands", () => {
  const base: NotifyView = {
    url: "https://h",
    on: ["failed", "succeeded"],
    phase: "waiting",
    state: "running",
    nextAt: null,
    deliveries: [],
  };
  const at = Date.UTC(2026, 0, 2, 3, 4, 5);
  const failedTry = { at, attempt: 2, status: "failed" as const, httpStatus: 500, error: "answered 500" };
  assert.equal(notifyLine(base, at), "on failed, succeeded: when the task ends");
  assert.equal(
    notifyLine({ ...base, phase: "retrying", nextAt: at + 40_000, deliveries: [failedTry] }, at),
    "failing (answered 500), try 3 in 40 s",
  );
  assert.equal(
    notifyLine({
      ...base,
      phase: "delivered",
      deliveries: [{ ...failedTry, status: "delivered", httpStatus: 204, error: null }],
    }, at),
    "delivered 204 at 03:04:05 UTC (try 2)",
  );
  assert.equal(
    notifyLine({ ...base, phase: "gave_up", deliveries: [{ ...failedTry, attempt: 5, status: "gave_up" }] }, at),
    "gave up after 5 tries: answered 500",
  );
  assert.match(notifyLine({ ...base, phase: "skipped", state: "cancelled" }, at), /ended cancelled/);
});
