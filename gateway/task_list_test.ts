import assert from "node:assert/strict";
import type { TaskView } from "../core/schema.ts";
import { addApiUser, makeZip, startTestManager, submitZip } from "../tests/kit/mod.ts";

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
