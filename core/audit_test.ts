import assert from "node:assert/strict";
import { type AuditInput, rateLimitedAudit } from "./audit.ts";

Deno.test("rateLimitedAudit() records at most its rate a minute, then one entry telling how many it left out", () => {
  const recorded: AuditInput[] = [];
  let now = 0;
  const record = rateLimitedAudit({ record: (e) => Promise.resolve(void recorded.push(e)) }, {
    perMinute: 3,
    now: () => now,
  });
  const entry = (n: number): AuditInput => ({ action: "bus.rejected", user: null, address: "nats", target: `s${n}` });
  for (let n = 0; n < 1000; n++) record(entry(n));
  assert.deepEqual(recorded.map((e) => e.target), ["s0", "s1", "s2"]);
  now = 60_000;
  record(entry(1000));
  assert.equal(recorded.length, 5);
  assert.equal(recorded[3].target, "s3");
  assert.equal(recorded[3].detail, "997 more like this one in a minute were not recorded");
  assert.equal(recorded[4].target, "s1000");
});
