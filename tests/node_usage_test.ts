/** A node's recent use, end to end: heartbeats from a real node, served by the gateway. */
import assert from "node:assert/strict";
import { startTestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "a node's CPU, memory and slot use over the last hour comes from its heartbeats, one sample per span",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    const nodes = (await (await tm.api("/api/v1/nodes")).json()).nodes;
    const name = nodes[0].name;
    let usage;
    for (let i = 0; i < 100; i++) {
      usage = await (await tm.api(`/api/v1/nodes/${name}/usage?minutes=60`)).json();
      if (usage.samples.length > 0 && usage.samples.at(-1).cpuBusy !== null) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.equal(usage.name, name);
    assert.equal(usage.spanMs, 30_000);
    assert.equal(usage.slots, 2);
    assert.ok(usage.samples.length >= 1 && usage.samples.length <= 2, JSON.stringify(usage.samples));
    const s = usage.samples.at(-1);
    assert.ok(s.cpuBusy >= 0 && s.cpuBusy <= 1, `cpu ${s.cpuBusy}`);
    assert.ok(s.memoryUsedBytes > 0 && s.memoryUsedBytes <= Deno.systemMemoryInfo().total);
    assert.equal(s.at % 30_000, 0);

    const missing = await tm.api("/api/v1/nodes/nowhere/usage");
    assert.equal(missing.status, 404);
    assert.match((await missing.json()).error.message, /Node 'nowhere' does not exist/);
  },
});
