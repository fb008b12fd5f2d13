/**
 * End to end: a real manager (embedded nats-server, Deno KV, gateway) and
 * compute nodes running as their own processes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import { Objm } from "@nats-io/obj";
import type { InstanceView, TaskView } from "../core/schema.ts";
import { PACKAGE_BUCKET } from "../core/schema.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  ROOT,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function packageCount(tm: { connectNats(): Promise<NatsConnection> }): Promise<number> {
  const nc = await tm.connectNats();
  try {
    const store = await new Objm(nc).open(PACKAGE_BUCKET);
    return (await store.list()).length;
  } finally {
    await nc.close();
  }
}

Deno.test({
  name: "a manager and two node processes run a 16-instance task: both take part, every log is kept",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using _a = startNodeProcess(tm.manager.natsUrl, "node-a", join(work.path, "a"), ["--slots=2"]);
    await using _b = startNodeProcess(tm.manager.natsUrl, "node-b", join(work.path, "b"), ["--slots=2"]);
    await nodesReady(tm.api, 2);
    const zip = await makeZip({
      "task.toml":
        `[task]\nname = "e2e"\nentrypoint = "bin/run.sh"\nworkdir = "data"\ninstances = 16\n[env]\nWORD = "marker"\n`,
      "bin/run.sh":
        `#!/bin/sh\nsleep 0.2\necho "$WORD $PARALLELIC_INSTANCE/$PARALLELIC_INSTANCES in $(basename $(pwd)) on $PARALLELIC_NODE"\necho "to stderr" >&2\n`,
      "data/input.txt": "x",
    });
    const res = await submitZip(tm, zip, "e2e");
    assert.equal(res.status, 201, await res.clone().text());
    const created = await res.json();
    assert.equal(created.instances, 16);
    assert.equal(created.state, "queued");
    const task = await tm.waitForTask(created.id);
    assert.equal(task.state, "succeeded");
    assert.deepEqual(task.counts, { queued: 0, running: 0, succeeded: 16, failed: 0, cancelled: 0 });
    const instances = await listInstances(tm.api, created.id);
    const byNode = new Map<string, number>();
    for (const i of instances) byNode.set(i.node!, (byNode.get(i.node!) ?? 0) + 1);
    assert.deepEqual([...byNode.keys()].sort(), ["node-a", "node-b"], "both nodes ran some instances");
    for (const i of [0, 7, 15]) {
      const view = await (await tm.api(`/api/v1/tasks/${created.id}/instances/${i}`)).json() as InstanceView;
      assert.equal(view.state, "succeeded");
      assert.equal(view.exitCode, 0);
      assert.ok(view.startedAt! <= view.endedAt!);
      const log = await (await tm.api(`/api/v1/tasks/${created.id}/instances/${i}/logs`)).text();
      assert.match(log, new RegExp(`marker ${i}/16 in data on ${view.node}`));
      assert.match(log, /to stderr/);
    }
    const list = await (await tm.api("/api/v1/tasks")).json() as { tasks: TaskView[] };
    assert.equal(list.tasks[0].id, created.id);
    // The same bytes again: stored once.
    const before = await packageCount(tm);
    const again = await submitZip(tm, zip, "e2e");
    assert.equal(again.status, 201);
    assert.equal(await packageCount(tm), before);
    await tm.waitForTask((await again.json()).id);
  },
});

Deno.test({
  name: "a failing instance fails the task and its exit code is visible; cancel stops running processes",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 4 });
    const failing = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 3\n`,
      "run.sh": `#!/bin/sh\nif [ "$PARALLELIC_INSTANCE" = 1 ]; then echo boom >&2; exit 7; fi\necho ok\n`,
    });
    const created = await (await submitZip(tm, failing)).json();
    const task = await tm.waitForTask(created.id);
    assert.equal(task.state, "failed");
    assert.equal(task.counts.failed, 1);
    assert.equal(task.counts.succeeded, 2);
    const view = await (await tm.api(`/api/v1/tasks/${created.id}/instances/1`)).json() as InstanceView;
    assert.equal(view.state, "failed");
    assert.equal(view.exitCode, 7);
    assert.match(await (await tm.api(`/api/v1/tasks/${created.id}/instances/1/logs`)).text(), /boom/);

    const marker = `${300 + Math.floor(Math.random() * 600)}.5`;
    const long = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 2\n`,
      "run.sh": `#!/bin/sh\nsleep ${marker} &\nwait\n`,
    });
    const longTask = await (await submitZip(tm, long)).json();
    const pgrep = async () => {
      const out = await new Deno.Command("pgrep", { args: ["-f", `sleep ${marker}`], stdout: "piped" }).output();
      return new TextDecoder().decode(out.stdout).trim().split("\n").filter(Boolean).length;
    };
    await waitUntil(async () => (await pgrep()) === 2, 15_000, "two sleeping instances");
    const cancel = await tm.api(`/api/v1/tasks/${longTask.id}/cancel`, { method: "POST" });
    assert.equal(cancel.status, 200);
    assert.equal((await cancel.json()).state, "cancelled");
    const t0 = Date.now();
    await waitUntil(async () => (await pgrep()) === 0, 5_000, "processes gone");
    assert.ok(Date.now() - t0 < 2000, `processes stopped within 2 s (took ${Date.now() - t0} ms)`);
    const after = await tm.waitForTask(longTask.id);
    assert.equal(after.state, "cancelled");
    assert.equal(after.counts.cancelled, 2);
  },
});

Deno.test({
  name: "bad packages get a 4xx that names the problem and leave nothing in the object store",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const cases: Array<[string, Uint8Array, RegExp, number]> = [
      ["broken zip", new TextEncoder().encode("PK\x03\x04 definitely not a zip"), /not a readable zip/, 400],
      [
        "../ entry",
        await makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\n`, "r.sh": "x", "../x": "x" }),
        /entry '..\/x' escapes the task root/,
        400,
      ],
      [
        "absolute path",
        await makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\n`, "r.sh": "x", "/tmp/x": "x" }),
        /entry '\/tmp\/x' is an absolute path/,
        400,
      ],
      ["missing task.toml", await makeZip({ "r.sh": "x" }), /no task.toml/, 400],
      [
        "entrypoint outside",
        await makeZip({ "task.toml": `[task]\nentrypoint = "../../bin/sh"\n` }),
        /line 2: key 'task.entrypoint' = "..\/..\/bin\/sh" leaves the task root/,
        400,
      ],
      [
        "unknown key",
        await makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\nparallelism = 4\n`, "r.sh": "x" }),
        /task.toml line 3: unknown key 'task.parallelism'/,
        400,
      ],
    ];
    for (const [what, bytes, pattern, status] of cases) {
      const res = await submitZip(tm, bytes);
      const body = await res.json();
      assert.equal(res.status, status, `${what}: ${JSON.stringify(body)}`);
      assert.match(body.error.message, pattern, what);
      assert.equal(typeof body.error.code, "string");
    }
    assert.equal(await packageCount(tm), 0, "nothing stored");
    const tasks = await (await tm.api("/api/v1/tasks")).json();
    assert.equal(tasks.tasks.length, 0, "no task created");
  },
});

Deno.test({
  name: "the API refuses a wrong token, takes multipart uploads, and /healthz needs none",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    assert.equal((await tm.api("/healthz", { token: null })).status, 200);
    const noToken = await tm.api("/api/v1/tasks", { token: null });
    assert.equal(noToken.status, 401);
    assert.match((await noToken.json()).error.message, /Missing token/);
    const wrong = await tm.api("/api/v1/tasks", { token: "nope" });
    assert.equal(wrong.status, 401);
    assert.deepEqual(await wrong.json(), { error: { code: "unauthorized", message: "Invalid token" } });
    const form = new FormData();
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "r.sh"\ninstances = 2\n`,
      "r.sh": "#!/bin/sh\necho multipart\n",
    });
    form.set("package", new File([zip as Uint8Array<ArrayBuffer>], "multi.zip"));
    const res = await tm.api("/api/v1/tasks", { method: "POST", body: form });
    assert.equal(res.status, 201);
    const created = await res.json();
    const task = await tm.waitForTask(created.id);
    assert.equal(task.name, "multi");
    assert.equal(task.state, "succeeded");
    assert.equal((await tm.api(`/api/v1/tasks/${created.id}/instances/2`)).status, 404);
    assert.equal((await tm.api(`/api/v1/tasks/t0000000000000000`)).status, 404);
    const badState = await tm.api("/api/v1/tasks?state=bogus");
    assert.equal(badState.status, 400);
    assert.match((await badState.json()).error.message, /state 'bogus' is not one of queued, running/);
  },
});

Deno.test({
  name: "the CLI submits a folder, waits, and exits 0 only when every instance succeeded",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    const cli = (...args: string[]) => runCli(tm, ...args);
    const ok = await cli("submit", join(ROOT, "examples/hello"), "--wait");
    assert.equal(ok.code, 0, ok.stderr);
    const id = ok.stdout.trim();
    assert.match(ok.stderr, /Task t[0-9a-z]{16} succeeded: 4 succeeded/);
    const logs = await cli("logs", id, "--instance", "3");
    assert.match(logs.stdout, /Hello from instance 3 of 4/);
    const status = await cli("status", id);
    assert.match(status.stdout, /succeeded/);
    const nodes = await cli("nodes");
    assert.match(nodes.stdout, /local\s+ready/);
    await using dir = await tempDir();
    await Deno.writeTextFile(join(dir.path, "task.toml"), `[task]\nentrypoint = "run.sh"\ninstances = 2\n`);
    await Deno.writeTextFile(join(dir.path, "run.sh"), "#!/bin/sh\nexit 3\n", { mode: 0o755 });
    const bad = await cli("submit", dir.path, "--wait");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /instance 0: exit code 3/);
    const unknown = await cli("submit", join(ROOT, "examples/hello"), "--wiat");
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /Unknown flag '--wiat'/);
  },
});

Deno.test({
  name: "every instance starts from a pristine task root: a copy an instance changed is never handed on",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 1 });
    // Instances that change their root (odd ones) and instances that only read it (even ones), on one slot.
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 40\n`,
      "run.sh": `#!/bin/sh
echo "lines=$(wc -l < counter.txt) root=$PARALLELIC_TASK_ROOT"
if [ $((PARALLELIC_INSTANCE % 2)) = 1 ]; then echo more >> counter.txt; touch new-file; fi
`,
      "counter.txt": "first\n",
    });
    const res = await submitZip(tm, zip);
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
    const roots = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const log = await (await tm.api(`/api/v1/tasks/${id}/instances/${i}/logs`)).text();
      const m = log.match(/lines=\s*(\d+) root=(\S+)/);
      assert.ok(m, `instance ${i} printed: ${log}`);
      assert.equal(m[1], "1", `instance ${i} saw a changed counter.txt`);
      roots.add(m[2]);
    }
    // Copies left untouched were reused (where the node can check them: posix_spawn, Linux with glibc).
    if (Deno.build.os === "linux" && Deno.env.get("PARALLELIC_SPAWNER") !== "deno") {
      assert.ok(roots.size < 30, `${roots.size} copies for 40 instances`);
    }
  },
});

Deno.test({
  name: "POST /api/v1/tasks with an Idempotency-Key: a repeat answers 200 with the same task; a bad key is a 400",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using tm = await startTestManager({ localNode: false });
    const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\n" });
    const post = (key: string) =>
      tm.api("/api/v1/tasks?name=idem", {
        method: "POST",
        headers: { "content-type": "application/zip", "idempotency-key": key },
        body: zip as Uint8Array<ArrayBuffer>,
      });
    const first = await post("retry-me-7");
    assert.equal(first.status, 201);
    const made = await first.json();
    assert.equal(made.replayed, undefined);
    const again = await post("retry-me-7");
    assert.equal(again.status, 200);
    assert.deepEqual(await again.json(), { ...made, replayed: true });
    const bad = await post("has a space");
    assert.equal(bad.status, 400);
    const error = (await bad.json()).error;
    assert.equal(error.code, "invalid_idempotency_key");
    assert.match(error.message, /^Cannot use Idempotency-Key 'has a space' as it is not 1-200 printable ASCII/);
    // The same key for another package: refused, naming the task it made.
    const other = await tm.api("/api/v1/tasks?name=idem", {
      method: "POST",
      headers: { "content-type": "application/zip", "idempotency-key": "retry-me-7" },
      body: await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\n`,
        "run.sh": "#!/bin/sh\necho 2\n",
      }) as Uint8Array<
        ArrayBuffer
      >,
    });
    assert.equal(other.status, 409);
    const reused = (await other.json()).error;
    assert.equal(reused.code, "idempotency_key_reused");
    assert.ok(reused.message.includes(made.id), reused.message);
    const { tasks } = await (await tm.api("/api/v1/tasks")).json() as { tasks: TaskView[] };
    assert.deepEqual(tasks.map((t) => t.id), [made.id], "one task for three submits");
  },
});
