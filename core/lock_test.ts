import assert from "node:assert/strict";
import { createKeyedLock } from "./lock.ts";

Deno.test("createKeyedLock() runs callers of one key in order, one at a time, and survives a failure", async () => {
  const lock = createKeyedLock();
  const events: string[] = [];
  const step = (name: string, ms: number, fail = false) => async () => {
    events.push(`${name}:start`);
    await new Promise((r) => setTimeout(r, ms));
    events.push(`${name}:end`);
    if (fail) throw new Error(name);
    return name;
  };
  const a = lock.run("k", step("a", 20, true));
  const b = lock.run("k", step("b", 1));
  const other = lock.run("other", step("c", 1));
  await assert.rejects(a, /a/);
  assert.equal(await b, "b");
  assert.equal(await other, "c");
  assert.ok(events.indexOf("b:start") > events.indexOf("a:end"), "b waits for a");
  assert.ok(events.indexOf("c:end") < events.indexOf("a:end"), "another key does not wait");
});
