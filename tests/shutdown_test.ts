/**
 * Graceful shutdown, end to end: SIGTERM to a node lets running instances
 * finish for its grace period and hands back the rest at once; SIGTERM to
 * the manager stops it cleanly. No instance is lost.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort } from "../core/nats_server.ts";
import type { InstanceView, NodeRecord, TaskView } from "../core/schema.ts";
import {
  makeZip,
  ROOT,
  startNodeProcess,
  startTestManager,
  startTestNats,
  submitZip,
  tempDir,
  TEST_TOKEN,
  waitUntil,
} from "./harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const sleepy = (n: number, seconds: number) =>
  makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = ${n}\n`,
    "run.sh": `#!/bin/sh\nsleep ${seconds}\necho "done $PARALLELIC_INSTANCE on $PARALLELIC_NODE"\n`,
  });

type Api = (path: string, init?: RequestInit) => Promise<Response>;

async function instances(api: Api, id: string): Promise<InstanceView[]> {
  return (await (await api(`/api/v1/tasks/${id}/instances`)).json()).instances;
}

async function nodeState(api: Api, name: string) {
  const { nodes } = await (await api("/api/v1/nodes")).json() as { nodes: NodeRecord[] };
  return nodes.find((n) => n.name === name)?.state;
}

Deno.test({
  name: "SIGTERM to a node: running instances finish within the grace period, the rest move at once",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ leaseMs: 30_000 });
    await using work = await tempDir();
    const leaving = startNodeProcess(tm.manager.natsUrl, "leaving", join(work.path, "a"), ["--slots=2", "--grace=10s"]);
    await using _b = startNodeProcess(tm.manager.natsUrl, "staying", join(work.path, "b"), ["--slots=2"]);
    await waitUntil(async () =>
      (await nodeState(tm.api, "leaving")) === "ready" && (await nodeState(tm.api, "staying")) === "ready"
    );
    const { id } = await (await submitZip(tm, await sleepy(8, 1))).json();
    await waitUntil(async () =>
      (await instances(tm.api, id)).filter((i) => i.node === "leaving" && i.state === "running").length >= 2
    );
    const t0 = Date.now();
    await leaving.kill("SIGTERM");
    assert.equal((await leaving.child.status).code, 0, leaving.output());
    assert.ok(Date.now() - t0 < 9000, "the node left once its instances finished, before the grace ran out");
    assert.equal(await nodeState(tm.api, "leaving"), "left");
    const task = await tm.waitForTask(id, 30_000);
    assert.equal(task.state, "succeeded");
    const list = await instances(tm.api, id);
    const finishedThere = list.filter((i) => i.history.length === 1 && i.node === "leaving");
    assert.ok(finishedThere.length >= 2, "what ran on the leaving node finished there");
    for (const i of list) {
      assert.equal(i.state, "succeeded");
      assert.equal(i.history.filter((h) => h.exitCode === 0).length, 1, `instance ${i.index}: one result`);
    }
  },
});

Deno.test({
  name: "SIGTERM to a node with a short grace: killed instances are handed back without waiting for the lease",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ leaseMs: 60_000 });
    await using work = await tempDir();
    const leaving = startNodeProcess(tm.manager.natsUrl, "quick", join(work.path, "a"), ["--slots=2", "--grace=200ms"]);
    await using _b = startNodeProcess(tm.manager.natsUrl, "other", join(work.path, "b"), ["--slots=2"]);
    await waitUntil(async () =>
      (await nodeState(tm.api, "quick")) === "ready" && (await nodeState(tm.api, "other")) === "ready"
    );
    const { id } = await (await submitZip(tm, await sleepy(8, 2))).json();
    await waitUntil(async () =>
      (await instances(tm.api, id)).filter((i) => i.node === "quick" && i.state === "running").length >= 1
    );
    await leaving.kill("SIGTERM");
    const task = await tm.waitForTask(id, 30_000);
    assert.equal(task.state, "succeeded", "done long before a 60 s lease would have expired");
    const moved = (await instances(tm.api, id)).filter((i) => i.history.length > 1);
    assert.ok(moved.length >= 1);
    for (const i of moved) {
      assert.equal(i.history[0].node, "quick");
      assert.match(i.history[0].error!, /node quick left/);
      assert.equal(i.history[0].exitCode, null, "the killed attempt recorded no result");
      assert.equal(i.state, "succeeded");
    }
  },
});

Deno.test({
  name: "SIGTERM to the manager stops it cleanly; restarted, it completes the task with nothing lost",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using work = await tempDir();
    const port = freePort();
    const spawnManager = () =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(ROOT, "main.ts"),
          "manager",
          `--data-dir=${join(work.path, "m")}`,
          `--port=${port}`,
          `--nats=${nats.server.url}`,
          "--no-local-node",
          "--heartbeat-ms=200",
          "--lease-ms=3000",
          "--log-level=warn",
        ],
        env: { PARALLELIC_TOKEN: TEST_TOKEN },
        stdout: "null",
        stderr: "null",
      }).spawn();
    const api: Api = (path, init = {}) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        ...init,
        headers: { ...init.headers, authorization: `Bearer ${TEST_TOKEN}` },
      });
    let manager = spawnManager();
    await using _a = startNodeProcess(nats.server.url, "a", join(work.path, "a"), ["--slots=2"]);
    try {
      await waitUntil(() => api("/healthz").then((r) => r.ok, () => false), 20_000, "manager up");
      await waitUntil(async () => (await nodeState(api, "a")) === "ready");
      const zip = await sleepy(6, 1);
      const { id } = await (await api("/api/v1/tasks", {
        method: "POST",
        headers: { "content-type": "application/zip" },
        body: zip as Uint8Array<ArrayBuffer>,
      })).json();
      await waitUntil(async () => (await instances(api, id)).some((i) => i.state === "running"));
      const t0 = Date.now();
      manager.kill("SIGTERM");
      assert.equal((await manager.status).code, 0, "clean exit");
      assert.ok(Date.now() - t0 < 10_000);
      manager = spawnManager();
      await waitUntil(() => api("/healthz").then((r) => r.ok, () => false), 20_000, "manager up again");
      const task = await waitUntil(
        async () => {
          const t = await (await api(`/api/v1/tasks/${id}`)).json() as TaskView;
          return ["succeeded", "failed", "cancelled"].includes(t.state) ? t : null;
        },
        60_000,
        "task end",
      );
      assert.equal(task.state, "succeeded");
      for (const i of await instances(api, id)) {
        assert.equal(i.state, "succeeded");
        assert.equal(i.history.length, 1, `instance ${i.index} ran once`);
      }
    } finally {
      manager.kill("SIGTERM");
      await manager.status;
    }
  },
});
