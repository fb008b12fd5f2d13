/**
 * Faults, end to end: a node killed or frozen, the manager killed and
 * restarted, the NATS server killed. In every case each instance ends with
 * exactly one recorded result.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { InstanceView } from "../core/schema.ts";
import {
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
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A task whose instances record each start in `startsFile`, then sleep. */
function sleepyTask(instances: number, startsFile: string, seconds: number, extra = "") {
  return makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = ${instances}\n[env]\nSTARTS = "${startsFile}"\n${extra}`,
    "run.sh":
      `#!/bin/sh\necho "$PARALLELIC_INSTANCE $PARALLELIC_ATTEMPT $PARALLELIC_NODE" >> "$STARTS"\nsleep ${seconds}\necho "done $PARALLELIC_INSTANCE"\n`,
  });
}

/** Every instance succeeded once: earlier attempts, if any, ended only because their node was lost. */
function assertOneResultEach(list: InstanceView[], total: number) {
  assert.equal(list.length, total);
  for (const i of list) {
    assert.equal(i.state, "succeeded", `instance ${i.index}: ${JSON.stringify(i.history)}`);
    const last = i.history[i.history.length - 1];
    assert.equal(last.exitCode, 0);
    assert.equal(last.attempt, i.attempt);
    for (const h of i.history.slice(0, -1)) {
      assert.equal(h.exitCode, null, `instance ${i.index}: an earlier attempt has no recorded result`);
      assert.match(h.error ?? "", /^node /, `instance ${i.index}: earlier attempts ended by a lost node`);
    }
    assert.deepEqual(i.history.map((h) => h.attempt), i.history.map((_, n) => n), "attempts numbered in order");
  }
}

Deno.test({
  name: "a node killed mid-run: its instances are requeued after its lease and finish elsewhere",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const a = startNodeProcess(tm.manager.natsUrl, "victim", join(work.path, "a"), ["--slots=2"]);
    await using _b = startNodeProcess(tm.manager.natsUrl, "survivor", join(work.path, "b"), ["--slots=2"]);
    try {
      await nodesReady(tm.api, ["victim", "survivor"]);
      const starts = join(work.path, "starts");
      const { id } = await (await submitZip(tm, await sleepyTask(8, starts, 1.5))).json();
      await waitUntil(async () =>
        (await listInstances(tm.api, id)).some((i) => i.node === "victim" && i.state === "running")
      );
      await a.kill("SIGKILL");
      const task = await tm.waitForTask(id, 60_000);
      assert.equal(task.state, "succeeded");
      const list = await listInstances(tm.api, id);
      assertOneResultEach(list, 8);
      const moved = list.filter((i) => i.history.length > 1);
      assert.ok(moved.length > 0, "some instances moved off the killed node");
      for (const i of moved) {
        assert.equal(i.history[0].node, "victim");
        assert.match(i.history[0].error!, /node victim lost/);
        assert.equal(i.node, "survivor");
        assert.equal(i.attempt, 1);
      }
      assert.equal((await listNodes(tm.api)).find((n) => n.name === "victim")?.state, "lost");
    } finally {
      await a.kill("SIGKILL");
    }
  },
});

Deno.test({
  name: "a frozen node's late reports are ignored, and it rejoins and takes work again",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using frozen = startNodeProcess(tm.manager.natsUrl, "frozen", join(work.path, "a"), ["--slots=2"]);
    await using _b = startNodeProcess(tm.manager.natsUrl, "steady", join(work.path, "b"), ["--slots=2"]);
    await nodesReady(tm.api, ["frozen", "steady"]);
    const starts = join(work.path, "starts");
    const { id } = await (await submitZip(tm, await sleepyTask(8, starts, 1))).json();
    await waitUntil(async () =>
      (await listInstances(tm.api, id)).some((i) => i.node === "frozen" && i.state === "running")
    );
    frozen.child.kill("SIGSTOP");
    const task = await tm.waitForTask(id, 60_000);
    frozen.child.kill("SIGCONT");
    assert.equal(task.state, "succeeded");
    const before = await listInstances(tm.api, id);
    assertOneResultEach(before, 8);
    assert.ok(before.some((i) => i.history[0].node === "frozen" && i.history.length === 2), "work moved off");
    // Thawed, the node reports its old attempts: they are fenced off.
    await nodesReady(tm.api, ["frozen"]);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(await listInstances(tm.api, id), before, "late reports changed nothing");
    // It rejoined and takes work again.
    const again = await (await submitZip(tm, await sleepyTask(8, join(work.path, "starts2"), 0.3))).json();
    assert.equal((await tm.waitForTask(again.id, 60_000)).state, "succeeded");
    const nodesUsed = new Set((await listInstances(tm.api, again.id)).map((i) => i.node));
    assert.ok(nodesUsed.has("frozen"), `the rejoined node took work: ${[...nodesUsed]}`);
  },
});

Deno.test({
  name: "the manager killed mid-run and restarted rebuilds its state: nothing runs twice and the task completes",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    await using work = await tempDir();
    await using manager = managerProcess(join(work.path, "manager"), [
      `--nats=${nats.server.url}`,
      "--lease-ms=3000",
      "--heartbeat-ms=200",
    ]);
    const api = manager.api;
    await manager.start();
    await using _a = startNodeProcess(nats.server.url, "a", join(work.path, "a"), ["--slots=2"]);
    await using _b = startNodeProcess(nats.server.url, "b", join(work.path, "b"), ["--slots=2"]);
    await nodesReady(api, ["a", "b"]);
    const starts = join(work.path, "starts");
    const zip = await sleepyTask(12, starts, 1.5);
    const id = await manager.submit(zip);
    await waitUntil(async () => (await listInstances(api, id)).filter((i) => i.state === "running").length >= 4);
    await manager.stop("SIGKILL");
    await new Promise((r) => setTimeout(r, 1000));
    await manager.start();
    const task = await manager.waitForTask(id);
    assert.equal(task.state, "succeeded");
    const list = await listInstances(api, id);
    assertOneResultEach(list, 12);
    for (const i of list) {
      // An assignment stored but not yet sent when the manager died is requeued (it never started).
      for (const h of i.history.slice(0, -1)) {
        assert.match(h.error ?? "", /no longer held it/, `instance ${i.index}: ${JSON.stringify(i.history)}`);
      }
    }
    const lines = (await Deno.readTextFile(starts)).trim().split("\n");
    assert.equal(lines.length, 12, `each instance started exactly once:\n${lines.join("\n")}`);
    assert.equal(new Set(lines.map((l) => l.split(" ")[0])).size, 12);
  },
});

Deno.test({
  name: "the embedded nats-server killed mid-run is restarted; manager and nodes reconnect and the task completes",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ leaseMs: 5000 });
    await using work = await tempDir();
    await using _a = startNodeProcess(tm.manager.natsUrl, "a", join(work.path, "a"), ["--slots=2"]);
    await using _b = startNodeProcess(tm.manager.natsUrl, "b", join(work.path, "b"), ["--slots=2"]);
    await nodesReady(tm.api, ["a", "b"]);
    const starts = join(work.path, "starts");
    const { id } = await (await submitZip(tm, await sleepyTask(12, starts, 1))).json();
    await waitUntil(async () => (await listInstances(tm.api, id)).filter((i) => i.state === "running").length >= 4);
    const killed = tm.manager.nats!;
    await killed.kill("SIGKILL");
    await waitUntil(() => tm.manager.nats !== killed, 20_000, "nats-server restarted");
    const task = await tm.waitForTask(id, 60_000);
    assert.equal(
      task.state,
      "succeeded",
      JSON.stringify((await listInstances(tm.api, id)).filter((i) => i.state !== "succeeded").map((i) => i.history)),
    );
    assertOneResultEach(await listInstances(tm.api, id), 12);
    const log = await (await tm.api(`/api/v1/tasks/${id}/instances/11/logs`)).text();
    assert.match(log, /done 11/, "logs after the restart are kept");
  },
});

Deno.test({
  name: "a timeout kills the instance's whole process tree; retries back off and stop after `retries`",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    const marker = `${400 + Math.floor(Math.random() * 500)}.25`;
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\n[limits]\ntimeout = "1s"\nretries = 2\n`,
      "run.sh": `#!/bin/sh\nsleep ${marker} &\nsleep ${marker} &\nwait\n`,
    });
    const { id } = await (await submitZip(tm, zip)).json();
    const task = await tm.waitForTask(id, 60_000);
    assert.equal(task.state, "failed");
    const [inst] = await listInstances(tm.api, id);
    assert.equal(inst.state, "failed");
    assert.equal(inst.history.length, 3, "first attempt and two retries");
    for (const h of inst.history) {
      assert.match(h.error ?? "", /timed out after 1s/);
      assert.equal(h.signal, "SIGTERM");
    }
    // Backoff: each retry starts at least the backoff (100 ms, doubling) after the previous attempt ended.
    assert.ok(inst.history[1].assignedAt - inst.history[0].endedAt! >= 90);
    assert.ok(inst.history[2].assignedAt - inst.history[1].endedAt! >= 190);
    const out = await new Deno.Command("pgrep", { args: ["-f", `sleep ${marker}`], stdout: "piped" }).output();
    assert.equal(new TextDecoder().decode(out.stdout).trim(), "", "no process of the tree survives");
  },
});

Deno.test({
  name: "an assignment sent again (a resend, a reconcile) is held once: each instance starts once",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 1 });
    await using work = await tempDir();
    const nc = await tm.connectNats();
    try {
      // Every assignment the manager sends to the local node, as sent.
      const sent: Uint8Array[] = [];
      nc.subscribe("parallelic.node.local.assign", { callback: (_e, m) => void sent.push(m.data.slice()) });
      await nc.flush();
      const starts = join(work.path, "starts");
      const go = join(work.path, "go");
      // One slot: instance 0 runs until the test says go, while the next waits in the node's queue (prefetched).
      const zip = await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 3\n[env]\nSTARTS = "${starts}"\nGO = "${go}"\n`,
        "run.sh": `#!/bin/sh\necho "$PARALLELIC_INSTANCE" >> "$STARTS"\nwhile [ ! -e "$GO" ]; do sleep 0.02; done\n`,
      });
      const id = (await (await submitZip(tm, zip)).json()).id;
      await waitUntil(async () => (await Deno.readTextFile(starts).catch(() => "")).length > 0, 10_000, "instance 0");
      assert.ok(sent.length >= 1);
      // Sent again while instance 0 runs and instance 1 waits in the queue.
      const first = sent.length;
      for (const data of sent.slice(0, first)) nc.publish("parallelic.node.local.assign", data);
      // Back on our own subscription: nats-server has passed them to the node (in this process) too.
      await waitUntil(() => sent.length >= 2 * first, 10_000, "the repeats to come round");
      await new Promise((r) => setTimeout(r, 100));
      await Deno.writeTextFile(go, "");
      assert.equal((await tm.waitForTask(id)).state, "succeeded");
      // Give a repeated run time to show up before counting.
      await new Promise((r) => setTimeout(r, 500));
      const lines = (await Deno.readTextFile(starts)).trim().split("\n");
      assert.deepEqual(lines.sort(), ["0", "1", "2"], `starts:\n${lines.join("\n")}`);
      assertOneResultEach(await listInstances(tm.api, id), 3);
    } finally {
      await nc.close();
    }
  },
});
