import assert from "node:assert/strict";
import { join } from "node:path";
import { createTaskActor } from "../actors/task/mod.ts";
import { createDataService } from "../services/data/mod.ts";
import { createWorkspaceService } from "../services/workspace.ts";
import { createBus } from "../core/bus.ts";
import { systemClock } from "../core/clock.ts";
import type { InstanceStatesView, PackageCheckView, TaskProgress } from "../core/schema.ts";
import { makeZip, startTestNats, testLogger } from "../tests/kit/mod.ts";
import { createGateway } from "./app.ts";
import { addToken } from "./auth.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A zip as a request body. */
const zipOf = async (files: Record<string, string>) => new Blob([(await makeZip(files)) as Uint8Array<ArrayBuffer>]);
const ADMIN = { authorization: "Bearer admin-token" };
const BOB = { authorization: "Bearer bob-token" };

/** A gateway on a real NATS server and Deno KV, with a task actor but no node. */
async function startGateway() {
  const nats = await startTestNats();
  const kv = await Deno.openKv(join(nats.dir, "state.kv"));
  const log = testLogger();
  const bus = createBus(nats.nc, log);
  const abort = new AbortController();
  const actor = createTaskActor({ bus, kv, clock: systemClock, log }, { signal: abort.signal, progressMs: 50 });
  await actor.ready;
  await addToken(kv, "admin-token", "admin", "admin");
  await addToken(kv, "bob-token", "bob", "submitter");
  const workspace = await createWorkspaceService({ nc: nats.nc, kv, log });
  const data = await createDataService({ nc: nats.nc, kv, clock: systemClock, log });
  const app = createGateway({ bus, kv, workspace, data, log }, { signal: abort.signal });
  return {
    app,
    async submit(toml: string, headers = ADMIN) {
      const body = await zipOf({ "task.toml": toml, "run.sh": "#!/bin/sh\n" });
      const res = await app.request("/api/v1/tasks?name=t", { method: "POST", headers, body });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()).id as string;
    },
    async [Symbol.asyncDispose]() {
      abort.abort();
      await actor.stopped;
      kv.close();
      await nats[Symbol.asyncDispose]();
    },
  };
}

/** Reads SSE events from a response until `until` returns true for one. */
async function readEvents(res: Response, until: (kind: string, data: unknown) => boolean) {
  const events: Array<{ kind: string; data: unknown }> = [];
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return events;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const kind = /^event: (.*)$/m.exec(block)?.[1] ?? "";
        const data = /^data: (.*)$/m.exec(block)?.[1];
        if (!data) continue;
        events.push({ kind, data: JSON.parse(data) });
        if (until(kind, JSON.parse(data))) return events;
      }
    }
  } finally {
    await reader.cancel();
  }
}

Deno.test({
  name: "POST /api/v1/packages/check gives the parsed task, or the very error a submit gives, and submits nothing",
  ...opts,
  async fn() {
    await using gw = await startGateway();
    const good = await zipOf({
      "task.toml": `[task]\nentrypoint = "run.sh"\n[task.matrix]\nx = [1, 2, 3]\n[resources]\nmemory = "1GiB"\n`,
      "run.sh": "#!/bin/sh\n",
    });
    const res = await gw.app.request("/api/v1/packages/check?name=demo.zip", {
      method: "POST",
      headers: ADMIN,
      body: good,
    });
    assert.equal(res.status, 200);
    const view = await res.json() as PackageCheckView;
    assert.ok(view.ok);
    assert.equal(view.spec.name, "demo");
    assert.equal(view.spec.instances, 3);
    assert.equal(view.spec.memoryBytes, 2 ** 30);
    assert.equal(view.entries, 2);
    const tasks = await (await gw.app.request("/api/v1/tasks", { headers: ADMIN })).json();
    assert.deepEqual(tasks.tasks, [], "a check submits nothing");

    const broken = await zipOf({ "task.toml": `[task]\nentrypoint = "run.sh"\ninstancs = 3\n`, "run.sh": "" });
    const submitted = await gw.app.request("/api/v1/tasks", { method: "POST", headers: ADMIN, body: broken });
    assert.equal(submitted.status, 400);
    const { error } = await submitted.json();
    const checked = await gw.app.request("/api/v1/packages/check", { method: "POST", headers: ADMIN, body: broken });
    assert.equal(checked.status, 200);
    assert.deepEqual(await checked.json(), { ok: false, error: { code: error.code, message: error.message } });
    assert.match(error.message, /instancs/);

    const viewer = await gw.app.request("/api/v1/packages/check", { method: "POST", body: good });
    assert.equal(viewer.status, 401, "a check needs a token");
  },
});

Deno.test({
  name: "GET /api/v1/tasks/{id}/states gives one letter per instance, in pages",
  ...opts,
  async fn() {
    await using gw = await startGateway();
    // No node joins: every instance stays queued.
    const id = await gw.submit(`[task]\nentrypoint = "run.sh"\ninstances = 2500\n`);
    const page = await (await gw.app.request(`/api/v1/tasks/${id}/states?from=1000&limit=2000`, { headers: ADMIN }))
      .json() as InstanceStatesView;
    assert.equal(page.from, 1000);
    assert.equal(page.total, 2500);
    assert.equal(page.states, "q".repeat(1500));
    await gw.app.request(`/api/v1/tasks/${id}/cancel`, { method: "POST", headers: ADMIN });
    const after = await (await gw.app.request(`/api/v1/tasks/${id}/states`, { headers: ADMIN })).json();
    assert.equal(after.states, "c".repeat(2500));
    const other = await gw.app.request(`/api/v1/tasks/${id}/states`, { headers: BOB });
    assert.equal(other.status, 404, "a submitter does not see another's task");
  },
});

Deno.test({
  name: "GET /api/v1/events streams task progress from NATS: ready first, own tasks only for a submitter",
  ...opts,
  async fn() {
    await using gw = await startGateway();
    const res = await gw.app.request("/api/v1/events?topics=tasks", { headers: BOB });
    assert.equal(res.status, 200);
    assert.match(res.headers.get("content-type")!, /^text\/event-stream/);
    const reading = readEvents(res, (kind, data) => kind === "task" && (data as TaskProgress).state === "cancelled");
    const hidden = await gw.submit(`[task]\nentrypoint = "run.sh"\nname = "admins"\n`);
    const mine = await gw.submit(`[task]\nentrypoint = "run.sh"\nname = "bobs"\n`, BOB);
    await gw.app.request(`/api/v1/tasks/${mine}/cancel`, { method: "POST", headers: BOB });
    const events = await reading;
    assert.equal(events[0].kind, "ready");
    assert.deepEqual(events[0].data, { user: "bob", role: "submitter" });
    const tasks = events.filter((e) => e.kind === "task").map((e) => e.data as TaskProgress);
    assert.ok(tasks.length >= 2);
    assert.ok(tasks.every((t) => t.taskId === mine && t.owner === "bob" && t.changed === null));
    assert.notEqual(hidden, mine);

    const one = await gw.app.request(`/api/v1/events?task=${hidden}`, { headers: BOB });
    assert.equal(one.status, 404, "a submitter cannot follow another's task");
    await one.body?.cancel();
  },
});

Deno.test({
  name: "the UI pages, scripts and zip.js are served with a strict content security policy",
  ...opts,
  async fn() {
    await using gw = await startGateway();
    const root = await gw.app.request("/");
    assert.equal(root.status, 302);
    assert.equal(root.headers.get("location"), "/tasks");
    for (const path of ["/signin", "/submit", "/tasks", "/tasks/t0000000000000000", "/nodes", "/data"]) {
      const res = await gw.app.request(path);
      assert.equal(res.status, 200, path);
      assert.match(res.headers.get("content-security-policy")!, /default-src 'self'/);
      const page = await res.text();
      assert.match(page, /<script type="module" src="\/ui\/\w+\.js"><\/script>/, path);
      assert.doesNotMatch(page, /<script>/, "no inline script");
    }
    const zip = await gw.app.request("/ui/vendor/zip.js");
    assert.equal(zip.status, 200);
    assert.match(zip.headers.get("content-type")!, /javascript/);
    assert.match(await zip.text(), /ZipWriter/);
    const etag = (await gw.app.request("/ui/common.js")).headers.get("etag")!;
    assert.equal((await gw.app.request("/ui/common.js", { headers: { "if-none-match": etag } })).status, 304);
    assert.equal((await gw.app.request("/ui/nothing.js")).status, 404);
    assert.equal((await gw.app.request("/ui/__proto__")).status, 404);
  },
});
