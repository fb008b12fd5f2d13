import assert from "node:assert/strict";
import { createRateLimiter } from "./limits.ts";

Deno.test("createRateLimiter() allows a burst, then one request per refill, per key", () => {
  let now = 0;
  const rl = createRateLimiter({ perSecond: 2, burst: 3, now: () => now });
  assert.deepEqual([rl.take("a"), rl.take("a"), rl.take("a")].map((d) => d.ok), [true, true, true]);
  const refused = rl.take("a");
  assert.equal(refused.ok, false);
  assert.equal(!refused.ok && refused.retryAfterMs, 500);
  assert.equal(rl.take("b").ok, true, "another key has its own bucket");
  now += 500;
  assert.equal(rl.take("a").ok, true);
  assert.equal(rl.take("a").ok, false);
});

Deno.test("createRateLimiter() never tracks more keys than its cap, dropping full buckets first", () => {
  let now = 0;
  const rl = createRateLimiter({ perSecond: 1, burst: 2, maxKeys: 100, now: () => now });
  for (let i = 0; i < 1000; i++) rl.take(`k${i}`);
  assert.ok(rl.size <= 100, `tracks ${rl.size}`);
  now += 10_000;
  rl.take("fresh");
  assert.ok(rl.size <= 100);
});
