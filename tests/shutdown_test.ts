/**
 * Graceful shutdown, end to end: SIGTERM to a node lets running instances
 * finish for its grace period and hands back the rest at once; SIGTERM to
 * the manager stops it cleanly. No instance is lost.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  type Api,
  listInstances,
  listNodes,
  makeZip,
  managerProcess,
  nodesReady,
  startNodeProcess,
  startTestManager,
  startTestNats,
  submitZip,
  tempDir,
  type TestManager,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const sleepy = (n: number, seconds: number) =>
  makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = ${n}\n`,
    "run.sh": `#!/bin/sh\nsleep ${seconds}\necho "done $PARALLELIC_INSTANCE on $PARALLELIC_NODE"\n`,
  });

async function nodeState(api: Api, name: string) {
  return (await listNodes(api)).find((n) => n.name === name)?.state;
}

/**
 * Runs `zip` on node "leaving" (grace 10 s) and node "staying", 2 slots each; sends SIGTERM to "leaving" once 2
 * instances run there and waits until it exited cleanly; then `check(tm, id, sentAt)`.
 */
async function sigtermWhileRunning(
  zip: Uint8Array,
  check: (tm: TestManager, id: string, sentAt: number) => Promise<void>,
) {
  await using tm = await startTestManager({ leaseMs: 30_000 });
  await using work = await tempDir();
  await using leaving = startNodeProcess(tm.manager.natsUrl, "leaving", join(work.path, "a"), [
    "--slots=2",
    "--grace=10s",
  ]);
  await using _staying = startNodeProcess(tm.manager.natsUrl, "staying", join(work.path, "b"), ["--slots=2"]);
  await nodesReady(tm.api, ["leaving", "staying"]);
  const { id } = await (await submitZip(tm, zip)).json();
  await waitUntil(async () =>
    (await listInstances(tm.api, id)).filter((i) => i.node === "leaving" && i.state === "running").length >= 2
  );
  const sentAt = Date.now();
  await leaving.kill("SIGTERM");
  assert.equal((await leaving.child.status).code, 0, leaving.output());
  await check(tm, id, sentAt);
}

Deno.test({
  name: "SIGTERM to a node: running instances finish within the grace period, the rest move at once",
  ...opts,
  async fn() {
    await sigtermWhileRunning(await sleepy(8, 1), async (tm, id, t0) => {
      assert.ok(Date.now() - t0 < 9000, "the node left once its instances finished, before the grace ran out");
      assert.equal(await nodeState(tm.api, "leaving"), "left");
      const task = await tm.waitForTask(id, 30_000);
      assert.equal(task.state, "succeeded");
      const list = await listInstances(tm.api, id);
      const finishedThere = list.filter((i) => i.history.length === 1 && i.node === "leaving");
      assert.ok(finishedThere.length >= 2, "what ran on the leaving node finished there");
      for (const i of list) {
        assert.equal(i.state, "succeeded");
        assert.equal(i.history.filter((h) => h.exitCode === 0).length, 1, `instance ${i.index}: one result`);
      }
    });
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
    const { id } = await (await submitZip(tm, await sleepy(8, 4))).json();
    // What quick holds was assigned longer ago than the manager waits for a node to list an assignment (the
    // orphan grace, 2 s here): while it stops, quick must still list what it drops or kills, until it left.
    await waitUntil(async () => {
      const there = (await listInstances(tm.api, id)).filter((i) => i.node === "quick" && i.state === "running");
      return there.length >= 1 && there.every((i) => Date.now() - i.history.at(-1)!.assignedAt > 2500);
    });
    await leaving.kill("SIGTERM");
    const task = await tm.waitForTask(id, 30_000);
    assert.equal(task.state, "succeeded", "done long before a 60 s lease would have expired");
    const moved = (await listInstances(tm.api, id)).filter((i) => i.history.length > 1);
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
    await using manager = managerProcess(join(work.path, "m"), [
      `--nats=${nats.server.url}`,
      "--heartbeat-ms=200",
      "--lease-ms=3000",
    ]);
    const api = manager.api;
    await manager.start();
    await using _a = startNodeProcess(nats.server.url, "a", join(work.path, "a"), ["--slots=2"]);
    await waitUntil(async () => (await nodeState(api, "a")) === "ready");
    const id = await manager.submit(await sleepy(6, 1));
    await waitUntil(async () => (await listInstances(api, id)).some((i) => i.state === "running"));
    const t0 = Date.now();
    assert.equal((await manager.stop("SIGTERM"))?.code, 0, "clean exit");
    assert.ok(Date.now() - t0 < 10_000);
    await manager.start();
    const task = await manager.waitForTask(id);
    assert.equal(task.state, "succeeded");
    for (const i of await listInstances(api, id)) {
      assert.equal(i.state, "succeeded");
      assert.equal(i.history.length, 1, `instance ${i.index} ran once`);
    }
  },
});

Deno.test({
  name: "SIGTERM to a node: what finishes during the grace period has its outputs stored; finalize sees them all",
  ...opts,
  async fn() {
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 8\n[finalize]\nentrypoint = "check.sh"\n`,
      "run.sh": `#!/bin/sh\nsleep 1\necho "$PARALLELIC_INSTANCE" > "$PARALLELIC_OUTPUT/out.txt"\n`,
      "check.sh": `#!/bin/sh\nn=$(ls "$PARALLELIC_WORKSPACE"/*/out.txt | wc -l)\necho "saw $n"\ntest "$n" = 8\n`,
    });
    await sigtermWhileRunning(zip, async (tm, id) => {
      const task = await tm.waitForTask(id, 30_000);
      const list = await listInstances(tm.api, id);
      assert.ok(list.some((i) => i.node === "leaving" && i.state === "succeeded"), "some finished on the leaving node");
      for (const i of list) {
        const last = i.history.at(-1)!;
        assert.ok((last.outputBytes ?? 0) > 0, `instance ${i.index} (on ${last.node}) has its outputs stored`);
      }
      assert.equal(task.state, "succeeded", "finalize saw every instance's outputs");
    });
  },
});

Deno.test({
  name: "SIGTERM to the manager while a client follows a running instance's log and the event stream: it exits",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using work = await tempDir();
    await using manager = managerProcess(join(work.path, "m"), [`--nats=${nats.server.url}`]);
    await manager.start();
    await using _a = startNodeProcess(nats.server.url, "a", join(work.path, "a"), ["--slots=1"]);
    await waitUntil(async () => (await nodeState(manager.api, "a")) === "ready");
    const id = await manager.submit(await sleepy(1, 120));
    await waitUntil(async () => (await listInstances(manager.api, id)).some((i) => i.state === "running"));
    const followed = await manager.api(`/api/v1/tasks/${id}/instances/0/logs?follow=1`);
    const events = await manager.api(`/api/v1/events`);
    assert.equal(followed.status, 200);
    assert.equal(events.status, 200);
    const bodies = Promise.all([followed.text(), events.text()]).catch(() => []);
    const stopped = manager.stop("SIGTERM");
    let timer: ReturnType<typeof setTimeout> | undefined;
    const outcome = await Promise.race([
      stopped.then((s) => `exited ${s?.code}`),
      new Promise((r) => timer = setTimeout(() => r("still running 20 s after SIGTERM"), 20_000)),
    ]);
    clearTimeout(timer);
    if (outcome !== "exited 0") await manager.stop("SIGKILL");
    await bodies;
    assert.equal(outcome, "exited 0", "open streams end at shutdown");
  },
});

Deno.test({
  name: "drain: instances sent ahead to the node do not start there; they go back to the queue",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ leaseMs: 30_000 });
    await using work = await tempDir();
    await using _a = startNodeProcess(tm.manager.natsUrl, "a", join(work.path, "a"), ["--slots=1"]);
    await nodesReady(tm.api, ["a"]);
    const { id } = await (await submitZip(tm, await sleepy(4, 2))).json();
    // One runs, and one more waits on the node for the slot (sent ahead).
    await waitUntil(async () => ((await listNodes(tm.api)).find((n) => n.name === "a")?.holding ?? 0) >= 2);
    const res = await tm.api("/api/v1/nodes/a/drain", { method: "POST" });
    assert.equal(res.status, 200, await res.text());
    await using _b = startNodeProcess(tm.manager.natsUrl, "b", join(work.path, "b"), ["--slots=2"]);
    const task = await tm.waitForTask(id, 30_000);
    assert.equal(task.state, "succeeded");
    const list = await listInstances(tm.api, id);
    const startedOnA = list.flatMap((i) => i.history).filter((h) => h.node === "a" && h.startedAt !== null);
    assert.equal(startedOnA.length, 1, "only what ran at the drain ran on a");
    for (const i of list) assert.equal(i.state, "succeeded");
  },
});
