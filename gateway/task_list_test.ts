import assert from "node:assert/strict";
import type { TaskView } from "../core/schema.ts";
import { join } from "node:path";
import { TASK_COUNTS, TASK_COUNTS_READY } from "../core/kv.ts";
import { addApiUser, makeZip, startTestManager, submitZip, tempDir, type TestManager } from "../tests/kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

type Page = { tasks: TaskView[]; next: string | null };

Deno.test({
  name: "the task list searches name, owner and id, and pages on with next/before",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const zipOf = (name: string) =>
      makeZip({ "task.toml": `[task]\nname = "${name}"\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\n" });
    const ids: string[] = [];
    for (const name of ["forest shot 1", "forest shot 2", "city shot 1", "sweep alpha", "sweep beta"]) {
      const res = await submitZip(tm, await zipOf(name), name);
      assert.equal(res.status, 201, await res.clone().text());
      ids.push((await res.json()).id);
    }
    const bobToken = await addApiUser(tm, "bob");
    const bobs = await tm.api("/api/v1/tasks?name=bobs", {
      method: "POST",
      token: bobToken,
      headers: { "content-type": "application/zip" },
      body: await zipOf("forest by bob") as Uint8Array<ArrayBuffer>,
    });
    assert.equal(bobs.status, 201, await bobs.clone().text());
    const list = async (query: string, token?: string): Promise<Page> => {
      const res = await tm.api(`/api/v1/tasks?${query}`, { token });
      assert.equal(res.status, 200, await res.clone().text());
      return await res.json();
    };
    const names = (p: Page) => p.tasks.map((t) => t.name);

    assert.deepEqual(names(await list("q=FOREST")), ["forest by bob", "forest shot 2", "forest shot 1"]);
    assert.deepEqual(names(await list("q=forest%20admin")), ["forest shot 2", "forest shot 1"]);
    assert.deepEqual(names(await list("q=bob")), ["forest by bob"]);
    assert.deepEqual(names(await list(`q=${ids[3]}`)), ["sweep alpha"]);
    assert.deepEqual(names(await list("q=nothing")), []);
    assert.deepEqual(names(await list("q=forest", bobToken)), ["forest by bob"], "a submitter sees their own");

    const first = await list("limit=2");
    assert.deepEqual(names(first), ["forest by bob", "sweep beta"]);
    assert.equal(first.next, first.tasks[1].id);
    const second = await list(`limit=2&before=${first.next}`);
    assert.deepEqual(names(second), ["sweep alpha", "city shot 1"]);
    const third = await list(`limit=2&before=${second.next}`);
    assert.deepEqual(names(third), ["forest shot 2", "forest shot 1"]);
    assert.equal(third.next, null);

    const bad = await tm.api("/api/v1/tasks?before=yesterday");
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /'before' = 'yesterday': give the id of a task/);
  },
});

Deno.test({
  name: "the task list's total comes from counters kept with each task's state, and is counted once for an old store",
  ...opts,
  async fn() {
    await using dir = await tempDir("parallelic-count-");
    const dataDir = join(dir.path, "m");
    const zipOf = (command: string) => makeZip({ "task.toml": `[task]\ncommand = "${command}"\n` });
    const total = async (tm: TestManager, query = "", token?: string) => {
      const res = await tm.api(`/api/v1/tasks?limit=1&${query}`, { token });
      assert.equal(res.status, 200);
      return (await res.json() as Page & { total: number | null }).total;
    };
    {
      await using tm = await startTestManager({ dataDir, localNode: true, slots: 2 });
      assert.equal(await total(tm), 0);
      const ok: string[] = [];
      for (let i = 0; i < 3; i++) ok.push((await (await submitZip(tm, await zipOf("true"), `ok${i}`)).json()).id);
      const bad = (await (await submitZip(tm, await zipOf("exit 3"), "bad")).json()).id;
      for (const id of [...ok, bad]) await tm.waitForTask(id);
      const bobToken = await addApiUser(tm, "bob");
      const bobs = await tm.api("/api/v1/tasks?name=held", {
        method: "POST",
        token: bobToken,
        headers: { "content-type": "application/zip" },
        body: await zipOf("sleep 60") as Uint8Array<ArrayBuffer>,
      });
      assert.equal(bobs.status, 201);
      assert.equal(await total(tm), 5);
      assert.equal(await total(tm, "state=succeeded"), 3);
      assert.equal(await total(tm, "state=failed"), 1);
      assert.equal(await total(tm, "", bobToken), 1, "a submitter's total counts their own");
      assert.equal(await total(tm, "q=ok"), null, "a search is not counted");
      assert.equal((await tm.api(`/api/v1/tasks/${ok[0]}`, { method: "DELETE" })).status, 200);
      assert.equal(
        (await tm.api(`/api/v1/tasks/${(await bobs.json()).id}/cancel`, {
          method: "POST",
        })).status,
        200,
      );
      const rerun = await tm.api(`/api/v1/tasks/${bad}/rerun`, {
        method: "POST",
        body: JSON.stringify({ instances: "failed" }),
      });
      assert.equal(rerun.status, 200);
      await tm.waitForTask(bad);
      assert.equal(await total(tm), 4);
      assert.equal(await total(tm, "state=succeeded"), 2);
      assert.equal(await total(tm, "state=failed"), 1, "the rerun failed again: counted once");
      assert.equal(await total(tm, "state=cancelled"), 1);
      assert.equal(await total(tm, "state=running"), 0);
    }
    // A store from before the counters: the first start counts once.
    const kv = await Deno.openKv(join(dataDir, "state.kv"));
    for await (const e of kv.list({ prefix: TASK_COUNTS })) await kv.delete(e.key);
    await kv.delete(TASK_COUNTS_READY);
    kv.close();
    await using tm = await startTestManager({ dataDir });
    assert.equal(await total(tm), 4);
    assert.equal(await total(tm, "state=succeeded"), 2);
  },
});
