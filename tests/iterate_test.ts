/**
 * End to end: working on a task in iterations (rerun in place), through the API and the CLI.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { InstanceView, TaskView } from "../core/schema.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  type TestManager,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const taskView = async (tm: TestManager, id: string) => await (await tm.api(`/api/v1/tasks/${id}`)).json() as TaskView;

/**
 * A render task: each instance writes its frame; frame 2 crashes until `$FIXED` exists; finalize assembles every
 * frame into one file, and fails while `$FINAL_BROKEN` exists.
 */
const renderPackage = (dir: string) =>
  makeZip({
    "task.toml": `[task]\nname = "render"\nentrypoint = "render.sh"\ninstances = 4\n` +
      `[env]\nFIXED = "${dir}/fixed"\nFINAL_BROKEN = "${dir}/final-broken"\n` +
      `[finalize]\nentrypoint = "assemble.sh"\n`,
    "render.sh":
      `#!/bin/sh\nif [ "$PARALLELIC_INSTANCE" = 2 ] && [ ! -e "$FIXED" ]; then echo crash >&2; exit 9; fi\n` +
      `echo "frame $PARALLELIC_INSTANCE" > "$PARALLELIC_OUTPUT/frame.txt"\n`,
    "assemble.sh": `#!/bin/sh\nif [ -e "$FINAL_BROKEN" ]; then exit 4; fi\n` +
      `cat "$PARALLELIC_WORKSPACE"/*/frame.txt > "$PARALLELIC_OUTPUT/movie.txt"\n`,
  });

Deno.test({
  name: "render, one frame fails, rerun it in the same task, finalize assembles every frame (API)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const created = await (await submitZip(tm, await renderPackage(dir.path), "render")).json();
    const failed = await tm.waitForTask(created.id);
    assert.equal(failed.state, "failed");
    assert.deepEqual([failed.counts.succeeded, failed.counts.failed], [3, 1]);

    const post = (body: unknown, id = created.id, token?: string) =>
      tm.api(`/api/v1/tasks/${id}/rerun`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: typeof body === "string" ? body : JSON.stringify(body),
        token,
      });
    // Bad bodies are 4xx that say what is wrong.
    for (
      const [body, status, message] of [
        ["{", 400, /not JSON/],
        [{ instances: "all" }, 400, /instances/],
        [{ instances: [-1] }, 400, /instances/],
        [{ instances: [] }, 400, /instances/],
        [{ frames: [1] }, 400, /frames/],
        [{ instances: [4] }, 404, /instances 0 to 3/],
        [{}, 400, /nothing was chosen/],
        [{ finalize: true }, 409, /1 of its 4 instances did not succeed/],
      ] as const
    ) {
      const res = await post(body);
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${await res.clone().text()}`);
      assert.match((await res.json()).error.message, message);
    }
    assert.equal((await post({ instances: "failed" }, "t0000000000000000")).status, 404);

    await Deno.writeTextFile(join(dir.path, "fixed"), "");
    const res = await post({ instances: "failed" });
    assert.equal(res.status, 200, await res.clone().text());
    assert.deepEqual(await res.json(), { id: created.id, state: "running", instances: 1, finalize: true });
    const done = await tm.waitForTask(created.id);
    assert.equal(done.state, "succeeded", JSON.stringify(done));
    assert.equal(done.finalize, "succeeded");
    assert.equal(done.reruns, 1);
    const frame = await (await tm.api(`/api/v1/tasks/${created.id}/instances/2`)).json() as InstanceView;
    assert.deepEqual(frame.history.map((h) => h.exitCode), [9, 0], "the failed attempt stays in the history");
    const movie = await (await tm.api(`/api/v1/tasks/${created.id}/workspace.tar?finalize=1`)).text();
    assert.match(movie, /frame 0\nframe 1\nframe 2\nframe 3\n/, "finalize saw the rerun frame under its own index");

    // A rerun while it runs is refused; once it ended, the task can still be deleted.
    const audit = await (await tm.api("/api/v1/audit?limit=20")).json() as { entries: { action: string }[] };
    assert.ok(audit.entries.some((e) => e.action === "task.rerun"), "the rerun is audited");
    assert.equal((await tm.api(`/api/v1/tasks/${created.id}`, { method: "DELETE" })).status, 200);
    assert.equal((await post({ instances: "failed" })).status, 404);
  },
});

Deno.test({
  name: "parallelic rerun: --failed, --instances 1,2-3 and --finalize through the CLI",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    await Deno.writeTextFile(join(dir.path, "final-broken"), "");
    const created = await (await submitZip(tm, await renderPackage(dir.path), "render")).json();
    await tm.waitForTask(created.id);
    const cli = (...args: string[]) => runCli(tm, ...args);

    const both = await cli("rerun", created.id, "--failed", "--finalize");
    assert.equal(both.code, 1);
    assert.match(both.stderr, /choose one/);
    const bad = await cli("rerun", created.id, "--instances", "3-1");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /Cannot read '3-1'.*3,7-9/);

    await Deno.writeTextFile(join(dir.path, "fixed"), "");
    const failed = await cli("rerun", created.id);
    assert.equal(failed.code, 0, failed.stderr);
    assert.match(failed.stdout, new RegExp(`Task ${created.id} running: 1 instance run again; finalize runs again`));
    const broken = await tm.waitForTask(created.id);
    assert.equal(broken.state, "failed");
    assert.match(broken.reason ?? "", /finalize failed/);

    await Deno.remove(join(dir.path, "final-broken"));
    const fin = await cli("rerun", created.id, "--finalize");
    assert.equal(fin.code, 0, fin.stderr);
    assert.match(fin.stdout, /running: finalize runs again/);
    assert.equal((await tm.waitForTask(created.id)).state, "succeeded");

    const some = await cli("rerun", created.id, "--instances", "1,2-3");
    assert.equal(some.code, 0, some.stderr);
    assert.match(some.stdout, /3 instances run again/);
    const again = await tm.waitForTask(created.id) as TaskView;
    assert.equal(again.state, "succeeded");
    assert.equal(again.reruns, 3);
    const view = await (await tm.api(`/api/v1/tasks/${created.id}/instances/1`)).json() as InstanceView;
    assert.equal(view.history.length, 2);
    assert.equal(view.attempt, 1);
  },
});

/** Adds a user with `role`; their token. */
async function addUser(tm: TestManager, name: string, role: string): Promise<string> {
  const res = await tm.api("/api/v1/users", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, role }),
  });
  assert.equal(res.status, 201);
  return (await res.json()).token;
}

Deno.test({
  name: "a running task's priority changes, it is held and released; submitters' priority is capped (API, CLI)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 1, gateway: { maxSubmitterPriority: 60 } });
    await using dir = await tempDir();
    const go = join(dir.path, "go");
    const sue = await addUser(tm, "sue", "submitter");
    const asSue = { PARALLELIC_MANAGER: tm.manager.url, PARALLELIC_TOKEN: sue };
    const pkg = (priority: number) =>
      makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 4\n[env]\nGO = "${go}"\n` +
          `[limits]\npriority = ${priority}\n`,
        "run.sh": `#!/bin/sh\nwhile [ ! -e "$GO" ]; do sleep 0.05; done\n`,
      });
    const submitAs = async (token: string, priority: number) =>
      await tm.api("/api/v1/tasks?name=p", {
        method: "POST",
        headers: { "content-type": "application/zip" },
        body: await pkg(priority) as Uint8Array<ArrayBuffer>,
        token,
      });
    const over = await submitAs(sue, 80);
    assert.equal(over.status, 403);
    assert.match((await over.json()).error.message, /at most 60 \(the manager's --max-submitter-priority\)/);
    const created = await (await submitAs(sue, 60)).json();
    const patch = (body: unknown, token = sue, id = created.id) =>
      tm.api(`/api/v1/tasks/${id}`, {
        method: "PATCH",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
        token,
      });
    for (
      const [body, status, message] of [
        [{}, 400, /give "priority"/],
        [{ priority: 101 }, 400, /priority/],
        [{ held: "yes" }, 400, /held/],
        [{ paused: true }, 400, /paused/],
        [{ priority: 61 }, 403, /at most 60/],
      ] as const
    ) {
      const res = await patch(body);
      assert.equal(res.status, status, `${JSON.stringify(body)}: ${await res.clone().text()}`);
      assert.match((await res.json()).error.message, message);
    }
    const raised = await patch({ priority: 90 }, tm.token);
    assert.equal(raised.status, 200, "admins are not capped");
    assert.equal((await raised.json()).priority, 90);

    const cli = (...args: string[]) => runCli(asSue, ...args);
    const wrong = await cli("set", created.id, "colour=red");
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /Cannot set 'colour=red'/);
    const set = await cli("set", created.id, "priority=55");
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /priority 55/);
    assert.equal((await (await tm.api(`/api/v1/tasks/${created.id}`)).json() as TaskView).spec.priority, 55);

    // One slot: some instances are dispatched and block; hold, then let them finish.
    await waitUntil(async () => (await taskView(tm, created.id)).counts.running > 0, 15_000, "running");
    const hold = await cli("hold", created.id);
    assert.equal(hold.code, 0, hold.stderr);
    assert.match(hold.stdout, /held: nothing new is dispatched/);
    const dispatched = (await taskView(tm, created.id)).counts.running;
    await Deno.writeTextFile(go, "");
    const paused = await waitUntil(
      async () => {
        const t = await taskView(tm, created.id);
        return t.counts.succeeded === dispatched ? t : null;
      },
      15_000,
      "the dispatched ones done",
    );
    assert.equal(paused.held, true);
    assert.equal(paused.counts.queued, 4 - dispatched, "nothing new was dispatched");
    const why = await (await tm.api(`/api/v1/tasks/${created.id}/explain`)).json();
    assert.match(why.explanation, /held.*parallelic release/);
    const release = await cli("release", created.id);
    assert.equal(release.code, 0, release.stderr);
    const done = await tm.waitForTask(created.id);
    assert.equal(done.state, "succeeded");
    assert.equal(done.held, false);
    const ended = await patch({ held: true });
    assert.equal(ended.status, 409);
    assert.match((await ended.json()).error.message, /ended succeeded: rerun it first/);
  },
});

Deno.test({
  name:
    "parallelic wait exits 0, 1, 2 or 3; status --limit and submit --json work; a flag a command ignores is refused",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const cli = (...args: string[]) => runCli(tm, ...args);
    const folder = (code: number, wait = "") => {
      const path = join(dir.path, `exit${code}${wait ? "-wait" : ""}`);
      Deno.mkdirSync(path);
      Deno.writeTextFileSync(join(path, "task.toml"), `[task]\nentrypoint = "run.sh"\ninstances = 2\n`);
      Deno.writeTextFileSync(
        join(path, "run.sh"),
        `#!/bin/sh\n${wait ? `while [ ! -e "${wait}" ]; do sleep 0.05; done\n` : ""}exit ${code}\n`,
      );
      Deno.chmodSync(join(path, "run.sh"), 0o755);
      return path;
    };
    const ok = await cli("submit", folder(0), "--no-wait", "--json");
    assert.equal(ok.code, 0, ok.stderr);
    const created = JSON.parse(ok.stdout);
    assert.equal(created.instances, 2);
    const waited = await cli("wait", created.id);
    assert.equal(waited.code, 0, waited.stderr);
    assert.equal(waited.stdout.trim(), `Task ${created.id} succeeded: 2 succeeded, 0 failed, 0 running, 0 queued`);

    const bad = await cli("submit", folder(5), "--wait", "--json");
    assert.equal(bad.code, 1);
    assert.equal(JSON.parse(bad.stdout).state, "failed", "--json with --wait prints the ended task");
    assert.equal((await cli("wait", JSON.parse(bad.stdout).id)).code, 1);

    const gate = join(dir.path, "gate");
    const slow = (await cli("submit", folder(0, gate), "--no-wait")).stdout.trim();
    const timedOut = await cli("wait", slow, "--timeout", "200ms");
    assert.equal(timedOut.code, 3, timedOut.stderr);
    assert.match(timedOut.stdout, new RegExp(`Task ${slow} still (queued|running) after 200ms`));
    assert.equal((await cli("cancel", slow)).code, 0);
    const cancelled = await cli("wait", slow, "--json");
    assert.equal(cancelled.code, 2);
    assert.equal(JSON.parse(cancelled.stdout).state, "cancelled");

    const list = await cli("status", "--limit", "2", "--json");
    assert.equal(list.code, 0, list.stderr);
    assert.deepEqual(JSON.parse(list.stdout).map((t: TaskView) => t.id), [slow, JSON.parse(bad.stdout).id]);

    for (
      const [args, message] of [
        [["cancel", slow, "--follow"], /Unknown flag '--follow'/],
        [["wait", slow, "--timeout", "soon"], /duration such as 90s/],
        [["status", slow, "--limit", "3"], /--limit is for the list/],
        [["logs", slow, "--instance", "1", "--finalize"], /not both/],
        [["explain", slow, "--json"], /Unknown flag '--json'/],
      ] as const
    ) {
      const res = await cli(...args);
      assert.notEqual(res.code, 0, args.join(" "));
      assert.match(res.stderr, message, args.join(" "));
    }
  },
});

Deno.test({
  name: "overrides at submit: a multipart field or --set lays TOML over task.toml, checked and shown (API, CLI)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const files = {
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 1\n[env]\nQ = "low"\n`,
      "run.sh": `#!/bin/sh\necho "q=$Q frame=$PARALLELIC_PARAM_FRAME"\n`,
    };
    const zip = await makeZip(files);
    const multipart = (overrides: string) => {
      const form = new FormData();
      form.append("package", new File([zip as Uint8Array<ArrayBuffer>], "tpl.zip"));
      form.append("overrides", overrides);
      return tm.api("/api/v1/tasks", { method: "POST", body: form });
    };
    const unknown = await multipart("task.instancez = 5\n");
    assert.equal(unknown.status, 400);
    assert.match((await unknown.json()).error.message, /task\.toml overrides: unknown key 'task\.instancez'/);
    const res = await multipart("task.instances = 3\nenv.Q = 'high'\n");
    assert.equal(res.status, 201, await res.clone().text());
    const created = await res.json();
    assert.equal(created.instances, 3);
    const task = await tm.waitForTask(created.id);
    assert.equal(task.state, "succeeded");
    assert.equal(task.overrides, "task.instances = 3\nenv.Q = 'high'\n");
    assert.match(await (await tm.api(`/api/v1/tasks/${created.id}/instances/2/logs`)).text(), /q=high/);

    const folder = join(dir.path, "tpl");
    await Deno.mkdir(folder);
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(folder, name), text);
    await Deno.chmod(join(folder, "run.sh"), 0o755);
    const cli = (...args: string[]) => runCli(tm, ...args);
    const bad = await cli("submit", folder, "--no-wait", "--set", "task.bogus=1");
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /unknown key 'task\.bogus'/);
    const sub = await cli(
      "submit",
      folder,
      "--wait",
      "--set",
      "task.instances=",
      "--set",
      "task.matrix.frame={from=1,to=4}",
      "--set",
      "env.Q=high",
    );
    assert.equal(sub.code, 1, "an empty value is a string, and instances must be a number");
    assert.match(sub.stderr, /task\.toml overrides: key 'task\.instances'/);
    const ok = await cli("submit", folder, "--wait", "--set", "task.matrix.frame={from=1,to=4}", "--set", "env.Q=high");
    assert.equal(ok.code, 0, ok.stderr);
    const id = ok.stdout.trim();
    const status = await cli("status", id);
    assert.match(status.stdout, /Instances\s+4/);
    assert.match(status.stdout, /Overrides\s+task\.matrix\.frame = \{from=1,to=4\}; env\.Q = "high"/);
    assert.match(await (await tm.api(`/api/v1/tasks/${id}/instances/3/logs`)).text(), /q=high frame=4/);
  },
});

Deno.test({
  name: "a node that keeps failing a task is avoided: explain and status say so, a rerun clears it (API, CLI)",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using _bad = startNodeProcess(tm.manager.natsUrl, "bad", join(work.path, "bad"), ["--slots=1"]);
    await using _good = startNodeProcess(tm.manager.natsUrl, "good", join(work.path, "good"), ["--slots=1"]);
    await nodesReady(tm.api, 2);
    const gate = join(work.path, "gate");
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 8\n[env]\nGATE = "${gate}"\n[limits]\nretries = 5\n`,
      "run.sh": `#!/bin/sh\nif [ "$PARALLELIC_NODE" = bad ]; then echo "no GPU driver" >&2; exit 1; fi\n` +
        `while [ ! -e "$GATE" ]; do sleep 0.05; done\n`,
    });
    const created = await (await submitZip(tm, zip, "flaky")).json();
    const failing = await waitUntil(
      async () => {
        const t = await taskView(tm, created.id);
        return (t.nodeFailures.bad ?? 0) >= 3 ? t : null;
      },
      20_000,
      "three failures on bad",
    );
    assert.equal(failing.nodeFailures.good, undefined);
    const cli = (...args: string[]) => runCli(tm, ...args);
    await waitUntil(
      async () => /nodes bad take no more/.test((await cli("explain", created.id)).stdout),
      10_000,
      "explain",
    );
    const status = await cli("status", created.id);
    assert.match(status.stdout, /Node failures\s+bad: \d+ \(bad take no more of it; a rerun clears this\)/);
    await Deno.writeTextFile(gate, "");
    const done = await tm.waitForTask(created.id, 60_000);
    assert.equal(done.state, "succeeded");
    const instances = await listInstances(tm.api, created.id);
    assert.ok(instances.every((i) => i.node === "good"), "every instance ended on good");
    // Drained, bad cannot fail the rerun's instance (and count again) before the counts are read.
    const drained = await tm.api("/api/v1/nodes/bad/drain", { method: "POST" });
    assert.equal(drained.status, 200);
    await drained.body?.cancel();
    const rerun = await cli("rerun", created.id, "--instances", "0");
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.deepEqual((await taskView(tm, created.id)).nodeFailures, {}, "a rerun clears it");
  },
});

Deno.test({
  name: "when every node that fits failed a task 3 times and ran none, it ends failed and says why; a rerun clears it",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using _bad = startNodeProcess(tm.manager.natsUrl, "bad", join(work.path, "bad"), ["--slots=1"]);
    await nodesReady(tm.api, 1);
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 12\n[limits]\nretries = 5\n`,
      "run.sh": `#!/bin/sh\nif [ "$PARALLELIC_NODE" = bad ]; then echo "no GPU driver" >&2; exit 1; fi\n`,
    });
    const created = await (await submitZip(tm, zip, "stuck")).json();
    const cli = (...args: string[]) => runCli(tm, ...args);
    const waited = await cli("wait", created.id, "--timeout", "60s");
    assert.equal(waited.code, 1, "it ended failed");
    const failed = await taskView(tm, created.id);
    const reason =
      /every ready node that fits failed 3 or more of its attempts and none succeeded there: bad \(\d+ failed\); \d+ not run: fix the cause, then parallelic rerun t\w+/;
    assert.match(failed.reason ?? "", reason);
    // Only what was sent to bad before its third failure failed there; the rest was never sent, retries unspent.
    assert.ok(failed.nodeFailures.bad >= 3 && failed.nodeFailures.bad < 12, JSON.stringify(failed.nodeFailures));
    assert.ok(failed.counts.cancelled > 0, JSON.stringify(failed.counts));
    assert.equal(failed.counts.succeeded, 0);
    assert.match((await cli("status", created.id)).stdout, /State\s+failed \(every ready node that fits failed/);
    assert.match((await cli("explain", created.id)).stdout, reason);

    await using _good = startNodeProcess(tm.manager.natsUrl, "good", join(work.path, "good"), ["--slots=1"]);
    await nodesReady(tm.api, 2);
    const rerun = await cli("rerun", created.id);
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.match(rerun.stdout, /12 instances run again/);
    const done = await tm.waitForTask(created.id, 60_000);
    assert.equal(done.state, "succeeded", JSON.stringify(done));
    // The rerun gave bad its chance again: some may have failed there, none ended there.
    assert.ok((await listInstances(tm.api, created.id)).every((i) => i.node === "good"), "all ended on good");
  },
});

Deno.test({
  name: "failures explain themselves: a timeout, a script without '#!' or with CRLF, a failed finalize, early results",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const cli = (...args: string[]) => runCli(tm, ...args);
    const folder = async (name: string, files: Record<string, string>) => {
      const path = join(dir.path, name);
      await Deno.mkdir(path);
      for (const [file, text] of Object.entries(files)) {
        await Deno.writeTextFile(join(path, file), text);
        if (file.endsWith(".sh")) await Deno.chmod(join(path, file), 0o755);
      }
      return path;
    };
    const slow = await folder("slow", {
      "task.toml": `[task]\nentrypoint = "run.sh"\n[limits]\ntimeout = "1s"\n`,
      "run.sh": `#!/bin/sh\nsleep 30\n`,
    });
    const timedOut = await cli("submit", slow, "--wait");
    assert.equal(timedOut.code, 1);
    assert.match(timedOut.stderr, /instance 0: timed out after 1s on /);
    const id = timedOut.stdout.trim();
    const view = await (await tm.api(`/api/v1/tasks/${id}/instances/0`)).json() as InstanceView;
    assert.equal(view.history[0].error, "timed out after 1s");

    for (
      const [name, script, message] of [
        ["noshebang", "echo hi\n", /cannot start 'run\.sh': it has no '#!' line: make '#!\/bin\/sh'/],
        [
          "crlf",
          "#!/bin/sh\r\necho hi\r\n",
          /cannot start 'run\.sh': it has Windows \(CRLF\) line ends.*\(dos2unix run\.sh\)/,
        ],
      ] as const
    ) {
      const path = await folder(name, { "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": script });
      const res = await cli("submit", path, "--wait");
      assert.equal(res.code, 1, name);
      assert.match(res.stderr, message, `${name}: ${res.stderr}`);
    }

    const fin = await folder("fin", {
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 2\n[finalize]\nentrypoint = "merge.sh"\n`,
      "run.sh": `#!/bin/sh\necho "part $PARALLELIC_INSTANCE" > "$PARALLELIC_OUTPUT/part.txt"\n`,
      "merge.sh": `#!/bin/sh\necho "bad flag" >&2\nexit 2\n`,
    });
    const finRes = await cli("submit", fin, "--wait");
    assert.equal(finRes.code, 1);
    const finId = finRes.stdout.trim();
    assert.match(finRes.stderr, /Finalize failed: exit code 2 on /);
    assert.match(
      finRes.stderr,
      new RegExp(`parallelic logs ${finId} --finalize; once fixed: parallelic rerun ${finId} --finalize`),
    );

    const gate = join(dir.path, "gate");
    const waiting = await folder("waiting", {
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 2\n[env]\nGATE = "${gate}"\n`,
      "run.sh": `#!/bin/sh\nwhile [ ! -e "$GATE" ]; do sleep 0.05; done\n`,
    });
    const running = (await cli("submit", waiting, "--no-wait")).stdout.trim();
    const early = await cli("results", running, "-o", join(dir.path, "early"));
    assert.equal(early.code, 0, early.stderr);
    assert.match(
      early.stderr,
      new RegExp(`Task ${running} is (queued|running) \\(0 of 2 instances ended\\).*parallelic wait ${running}`),
    );
    await Deno.writeTextFile(gate, "");
    await tm.waitForTask(running);
  },
});

Deno.test({
  name: "a submit no node could ever run is accepted with a warning naming why; --strict refuses it (API, CLI)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const files = {
      "task.toml": `[task]\nentrypoint = "run.sh"\n[resources]\ngpus = 1\ncpus = 4\n`,
      "run.sh": "#!/bin/sh\n",
    };
    await waitUntil(async () => (await (await tm.api("/api/v1/nodes")).json()).nodes.length > 0, 15_000, "a node");
    const res = await submitZip(tm, await makeZip(files), "gpu");
    assert.equal(res.status, 201);
    const created = await res.json();
    assert.deepEqual(created.warnings, [
      "no node could ever run it: no node has slots >= 4 (nodes: local: 2)",
      "no node could ever run it: no node has gpus >= 1 (nodes: local: 0)",
    ]);
    const strict = await tm.api("/api/v1/tasks?name=gpu&strict=1", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: await makeZip(files) as Uint8Array<ArrayBuffer>,
    });
    assert.equal(strict.status, 400);
    const error = (await strict.json()).error;
    assert.equal(error.code, "unplaceable");
    assert.match(error.message, /no node has gpus >= 1.*without --strict \(\?strict=1\) it is accepted/);

    const folder = join(dir.path, "gpu");
    await Deno.mkdir(folder);
    for (const [name, text] of Object.entries(files)) await Deno.writeTextFile(join(folder, name), text);
    const cli = (...args: string[]) => runCli(tm, ...args);
    const warned = await cli("submit", folder, "--no-wait");
    assert.equal(warned.code, 0, warned.stderr);
    assert.match(warned.stderr, /Warning: no node could ever run it: no node has gpus >= 1 \(nodes: local: 0\)/);
    const refused = await cli("submit", folder, "--no-wait", "--strict");
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /Cannot submit task 'gpu' as no node could ever run it/);
    for (const id of [created.id, warned.stdout.trim()]) {
      await tm.api(`/api/v1/tasks/${id}/cancel`, { method: "POST" });
    }
  },
});
