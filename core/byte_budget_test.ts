import assert from "node:assert/strict";
import { createByteBudget, shareOf } from "./byte_budget.ts";

Deno.test("a byte budget grants up to what is free, and makes takers wait in turn past its limit", async () => {
  const budget = createByteBudget(10);
  assert.equal(await budget.take(2, 8), 8);
  assert.equal(await budget.take(1, 8), 2, "only what is free");
  const order: string[] = [];
  const a = budget.take(4, 6).then((n) => (order.push(`a${n}`), n));
  const b = budget.take(1, 1).then((n) => (order.push(`b${n}`), n));
  await Promise.resolve();
  assert.deepEqual(order, [], "nothing free: both wait");
  budget.give(3);
  await Promise.resolve();
  assert.deepEqual(order, [], "b waits behind a, which needs 4");
  budget.give(3);
  assert.equal(await a, 6, "a takes all that is free, up to its most");
  assert.deepEqual(order, ["a6"], "b still waits: nothing free");
  budget.give(1);
  assert.equal(await b, 1);
  assert.equal(budget.usedBytes(), 10);
  assert.equal(budget.peakBytes(), 10, "never past the limit");
  // One asking for more than the limit gets the whole budget once everything is back.
  const big = budget.take(20, 30);
  budget.give(10);
  assert.equal(await big, 10);
});

Deno.test("a share gives back what its reader still holds when it closes, and anything taken after", async () => {
  const budget = createByteBudget(10);
  const share = shareOf(budget);
  assert.equal(await share.take(4, 4), 4);
  share.give(1);
  assert.equal(budget.usedBytes(), 3);
  const late = share.take(8, 8);
  share.close();
  assert.equal(await late, 8);
  assert.equal(budget.usedBytes(), 0, "taken after close goes straight back");
});
