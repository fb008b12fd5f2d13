import assert from "node:assert/strict";
import { join } from "node:path";
import type { InstanceView } from "../core/schema.ts";
import { makeZip, startTestManager, submitZip } from "../tests/kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

type FailedPage = { instances: InstanceView[]; from: number; total: number; next: number | null };

Deno.test({
  name: "state=failed pages through failed instances with exit code, node and last stderr line",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 4 });
    const zip = await makeZip({
      "task.toml": `[task]\nname = "some fail"\nentrypoint = "run.sh"\n` +
        `[task.matrix]\nseed = { from = 100, to = 119 }\n`,
      "run.sh": `#!/bin/sh\ni=$PARALLELIC_INSTANCE\necho "out $i"\n` +
        `if [ $((i % 3)) -eq 0 ]; then echo "warming up" >&2; echo "boom at $i" >&2; exit $((i + 1)); fi\n`,
    });
    const res = await submitZip(tm, zip, "some-fail");
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    const task = await tm.waitForTask(id);
    assert.equal(task.state, "failed");
    assert.equal(task.counts.failed, 7);

    const seen: InstanceView[] = [];
    let from: number | null = 0;
    let pages = 0;
    while (from !== null) {
      const page: FailedPage = await (await tm.api(`/api/v1/tasks/${id}/instances?state=failed&from=${from}&limit=3`))
        .json();
      assert.equal(page.total, 7);
      seen.push(...page.instances);
      from = page.next;
      pages++;
    }
    assert.equal(pages, 3);
    assert.deepEqual(seen.map((i) => i.index), [0, 3, 6, 9, 12, 15, 18]);
    for (const inst of seen) {
      assert.equal(inst.state, "failed");
      assert.equal(inst.exitCode, inst.index + 1);
      assert.equal(inst.node, "local");
      assert.equal(inst.params.seed, 100 + inst.index);
      assert.equal(inst.history.at(-1)?.lastStderr, `boom at ${inst.index}`);
    }
    const tail: FailedPage = await (await tm.api(`/api/v1/tasks/${id}/instances?state=failed&from=10`)).json();
    assert.deepEqual(tail.instances.map((i) => i.index), [12, 15, 18]);
    assert.equal(tail.next, null);
    const ok: InstanceView = await (await tm.api(`/api/v1/tasks/${id}/instances/1`)).json();
    assert.equal(ok.history.at(-1)?.lastStderr, undefined, "no stderr, no line");

    const bad = await tm.api(`/api/v1/tasks/${id}/instances?state=broken`);
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /'state' = 'broken': give failed/);

    const del = await tm.api(`/api/v1/tasks/${id}`, { method: "DELETE" });
    assert.equal(del.status, 200, await del.clone().text());
    const kv = await Deno.openKv(join(tm.dataDir, "state.kv"));
    try {
      const left = await Array.fromAsync(kv.list({ prefix: ["failed", id] }));
      assert.equal(left.length, 0, "the failure index goes with the task");
    } finally {
      kv.close();
    }
  },
});
