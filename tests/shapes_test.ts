/**
 * End to end: shapes of work beyond one entrypoint over many instances:
 * command-only tasks (a package that is only task.toml), a throttle on how
 * many instances run at once, list inputs, and chunks.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { TaskView } from "../core/schema.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "a folder holding only task.toml runs its command through /bin/sh in the workdir, and its finalize command",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const root = join(dir.path, "only-toml");
    await Deno.mkdir(root);
    await Deno.writeTextFile(
      join(root, "task.toml"),
      `[task]
command = "echo \\"hi $PARALLELIC_INSTANCE from $(basename \\"$(pwd)\\")\\" > \\"$PARALLELIC_OUTPUT/said.txt\\" && test -f task.toml"
instances = 3
[finalize]
command = "cat \\"$PARALLELIC_WORKSPACE\\"/*/said.txt | sort > \\"$PARALLELIC_OUTPUT/all.txt\\""
`,
    );
    const sub = await runCli(tm, "submit", root, "--wait");
    assert.equal(sub.code, 0, sub.stderr);
    const id = sub.stdout.trim();
    const out = join(dir.path, "out");
    const got = await runCli(tm, "results", id, "--finalize", "-o", out);
    assert.equal(got.code, 0, got.stderr);
    const all = await Deno.readTextFile(join(out, "all.txt"));
    // The workdir is the instance's copy of the task root, which holds task.toml (test -f passed: exit 0).
    assert.match(all, /^hi 0 from \S+\nhi 1 from \S+\nhi 2 from \S+\n$/);
    const status = await runCli(tm, "status", id);
    assert.match(status.stdout, /Command\s+echo "hi \$PARALLELIC_INSTANCE/);
  },
});

Deno.test({
  name: "max_running keeps at most N instances of a task running at once across two nodes; explain says so",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 4 });
    await using work = await tempDir();
    await using _b = startNodeProcess(tm.manager.natsUrl, "node-b", join(work.path, "b"), ["--slots=4"]);
    await nodesReady(tm.api, 2);
    const shared = join(work.path, "running");
    await Deno.mkdir(shared);
    // Each instance marks itself running in a folder both nodes see, and notes how many marks it saw.
    const zip = await makeZip({
      "task.toml": `[task]\ncommand = "sh count.sh"\ninstances = 12\n[limits]\nmax_running = 2\n` +
        `[env]\nSHARED = "${shared}"\n`,
      "count.sh":
        `touch "$SHARED/$PARALLELIC_INSTANCE"\nsleep 0.3\nls "$SHARED" | wc -l > "$PARALLELIC_OUTPUT/seen"\n` +
        `rm "$SHARED/$PARALLELIC_INSTANCE"\n`,
    });
    const res = await submitZip(tm, zip, "throttled");
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    let peak = 0;
    let explained = "";
    for (;;) {
      const task = await (await tm.api(`/api/v1/tasks/${id}`)).json() as TaskView;
      peak = Math.max(peak, task.counts.running);
      if (task.counts.queued > 0 && task.counts.running === 2 && !explained) {
        explained = (await (await tm.api(`/api/v1/tasks/${id}/explain`)).json()).explanation;
      }
      if (["succeeded", "failed", "cancelled"].includes(task.state)) {
        assert.equal(task.state, "succeeded");
        break;
      }
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(peak <= 2, `at most 2 running or sent ahead at once, saw ${peak}`);
    const got = await runCli(tm, "results", id, "-o", join(work.path, "out"));
    assert.equal(got.code, 0, got.stderr);
    for (let i = 0; i < 12; i++) {
      const seen = Number((await Deno.readTextFile(join(work.path, "out", String(i), "seen"))).trim());
      assert.ok(seen >= 1 && seen <= 2, `instance ${i} saw ${seen} running`);
    }
    assert.match(explained, /wait for \[limits\] max_running = 2: 2 instances are running/);
  },
});

Deno.test({
  name: "list inputs: a line, a CSV row or a JSON object per instance; 10,000 lines keep the task record small",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using work = await tempDir();
    const say =
      `printf '%s|%s|%s' "$PARALLELIC_INPUT" "$PARALLELIC_PARAM_SEED" "$PARALLELIC_PARAM_LABEL" > "$PARALLELIC_OUTPUT/got"`;
    const cases: Array<[string, string, string[]]> = [
      ["jobs.txt", "a.exr\n\nb c.exr\n", ["a.exr||", "b c.exr||"]],
      ["runs.csv", `seed,label\n1,"x, y"\n2,z\n`, ["|1|x, y", "|2|z"]],
      ["runs.jsonl", `{"seed": 7, "label": "j"}\n{"seed": 8, "label": true}\n`, ["|7|j", "|8|true"]],
    ];
    for (const [file, text, want] of cases) {
      const zip = await makeZip({
        "task.toml": `[task]\ncommand = ${JSON.stringify(say)}\ninputs = "${file}"\n`,
        [file]: text,
      });
      const res = await submitZip(tm, zip, "inputs");
      assert.equal(res.status, 201, await res.clone().text());
      const { id, instances } = await res.json();
      assert.equal(instances, 2);
      assert.equal((await tm.waitForTask(id)).state, "succeeded");
      const out = join(work.path, file);
      assert.equal((await runCli(tm, "results", id, "-o", out)).code, 0);
      for (let i = 0; i < 2; i++) assert.equal(await Deno.readTextFile(join(out, String(i), "got")), want[i]);
    }
    const csvTask = (await (await tm.api("/api/v1/tasks")).json()).tasks.find((t: TaskView) =>
      t.spec.inputs?.format === "csv"
    );
    const view = await (await tm.api(`/api/v1/tasks/${csvTask.id}/instances/0`)).json();
    assert.deepEqual(view.params, { seed: "1", label: "x, y" });

    // 10,000 lines: the task record holds none of them, and an instance's row is read from the package.
    const jobs = Array.from({ length: 10_000 }, (_, i) => `frame-${i}`).join("\n");
    const big = await makeZip({
      "task.toml": `[task]\ncommand = "true"\ninputs = "jobs.txt"\n[placement.labels]\nnone = "yet"\n`,
      "jobs.txt": jobs,
    });
    const res = await submitZip(tm, big, "many");
    assert.equal(res.status, 201, await res.clone().text());
    const { id, instances } = await res.json();
    assert.equal(instances, 10_000);
    const record = await (await tm.api(`/api/v1/tasks/${id}`)).text();
    assert.ok(record.length < 2048, `task record of ${record.length} characters`);
    const last = await (await tm.api(`/api/v1/tasks/${id}/instances/9999`)).json();
    assert.deepEqual(last.params, { input: "frame-9999" });
    const page = await (await tm.api(`/api/v1/tasks/${id}/instances?from=5000&limit=2`)).json();
    assert.deepEqual(page.instances.map((i: { params: unknown }) => i.params), [
      { input: "frame-5000" },
      { input: "frame-5001" },
    ]);
    assert.equal((await tm.api(`/api/v1/tasks/${id}/cancel`, { method: "POST" })).status, 200);
  },
});

Deno.test({
  name: "chunks: 10 frames per process, each instance with its own record, outputs and the chunk's exit code",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using work = await tempDir();
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "render.sh"\nchunk = 10\n[task.matrix]\nframe = { from = 1, to = 25 }\n`,
      "render.sh": `#!/bin/sh
seen="$PARALLELIC_INSTANCE-$PARALLELIC_INSTANCE_LAST $PARALLELIC_PARAM_FRAME-$PARALLELIC_PARAM_FRAME_LAST pid $$"
for i in $(sed 's/^{"index":\\([0-9]*\\),.*/\\1/' "$PARALLELIC_CHUNK"); do
  grep "\\"index\\":$i," "$PARALLELIC_CHUNK" > "$PARALLELIC_OUTPUT/$i/line"
  echo "$seen" > "$PARALLELIC_OUTPUT/$i/seen"
done
[ "$PARALLELIC_INSTANCE" != 20 ] || exit 3
`,
    });
    const res = await submitZip(tm, zip, "frames");
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    const task = await tm.waitForTask(id);
    assert.equal(task.state, "failed");
    assert.deepEqual(task.counts, { queued: 0, running: 0, succeeded: 20, failed: 5, cancelled: 0 });
    const out = join(work.path, "out");
    assert.equal((await runCli(tm, "results", id, "-o", out)).code, 0);
    const seen = async (i: number) => (await Deno.readTextFile(join(out, String(i), "seen"))).trim();
    assert.match(await seen(0), /^0-9 1-10 pid \d+$/);
    assert.equal(await seen(9), await seen(0), "instances 0-9 ran in one process");
    assert.match(await seen(10), /^10-19 11-20 pid \d+$/);
    assert.notEqual(await seen(10), await seen(0));
    assert.match(await seen(24), /^20-24 21-25 pid \d+$/);
    assert.equal(
      (await Deno.readTextFile(join(out, "13", "line"))).trim(),
      JSON.stringify({ index: 13, params: { frame: 14 } }),
    );
    const instances = await listInstances(tm.api, id);
    assert.equal(instances.length, 25);
    assert.deepEqual(
      instances.map((i) => i.exitCode),
      [...Array(20).fill(0), ...Array(5).fill(3)],
      "each instance has its own record, with its chunk's exit code",
    );
  },
});

Deno.test({
  name: "chunks: rerunning one instance runs it alone, the others untouched; each log view leads to the chunk's (CLI)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using work = await tempDir();
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "render.sh"\nchunk = 10\n[task.matrix]\nframe = { from = 1, to = 20 }\n`,
      "render.sh": `#!/bin/sh
echo "process $PARALLELIC_INSTANCE-$PARALLELIC_INSTANCE_LAST attempt $PARALLELIC_ATTEMPT"
for i in $(seq "$PARALLELIC_INSTANCE" "$PARALLELIC_INSTANCE_LAST"); do
  echo "$PARALLELIC_INSTANCE-$PARALLELIC_INSTANCE_LAST pid $$" > "$PARALLELIC_OUTPUT/$i/seen"
done
`,
    });
    const { id } = await (await submitZip(tm, zip, "frames")).json();
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
    const cli = (...args: string[]) => runCli(tm, ...args);
    const results = async (name: string) => {
      const out = join(work.path, name);
      assert.equal((await cli("results", id, "-o", out)).code, 0);
      const seen = async (i: number) => (await Deno.readTextFile(join(out, String(i), "seen"))).trim();
      return await Promise.all(Array.from({ length: 20 }, (_, i) => seen(i)));
    };
    const before = await results("before");
    assert.match(before[13], /^10-19 pid \d+$/);

    const rerun = await cli("rerun", id, "--instances", "13");
    assert.equal(rerun.code, 0, rerun.stderr);
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
    const after = await results("after");
    assert.match(after[13], /^13-13 pid \d+$/, "PARALLELIC_INSTANCE and _LAST are both 13: it ran alone");
    assert.notEqual(after[13].split(" pid ")[1], before[13].split(" pid ")[1], "in a process of its own");
    after[13] = before[13];
    assert.deepEqual(after, before, "the others kept their outputs");
    const instances = await listInstances(tm.api, id);
    assert.deepEqual(instances.map((i) => i.history.length), instances.map((i) => i.index === 13 ? 2 : 1));
    assert.deepEqual(instances[13].history.map((h) => h.chunk ?? null), [{ first: 10, last: 19 }, null]);

    // Instance 12's log leads to the chunk's, kept under instance 10; 13's new attempt has a log of its own.
    const log12 = await cli("logs", id, "--instance", "12");
    assert.equal(
      log12.stdout,
      `[instance 12 attempt 0 ran in the chunk of instances 10-19 (one process): its log is under instance 10: ` +
        `parallelic logs ${id} --instance 10]\n`,
    );
    assert.equal((await cli("logs", id, "--instance", "10")).stdout, "process 10-19 attempt 0\n");
    const log13 = (await cli("logs", id, "--instance", "13")).stdout;
    assert.match(
      log13,
      /^\[instance 13 attempt 0 ran in the chunk of instances 10-19 .*\]\nprocess 13-13 attempt 1\n$/,
    );
    const attempt1 = await (await tm.api(`/api/v1/tasks/${id}/instances/13/logs?attempt=1`)).text();
    assert.equal(attempt1, "process 13-13 attempt 1\n", "the note is about attempt 0 only");
  },
});

Deno.test({
  name: "after: a dependent waits, reads the upstream workspace, keeps it from deletion, and is cancelled with it",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using work = await tempDir();
    const submit = async (files: Record<string, string>, query = "") => {
      const res = await tm.api(`/api/v1/tasks?name=t${query}`, {
        method: "POST",
        headers: { "content-type": "application/zip" },
        body: await makeZip(files) as Uint8Array<ArrayBuffer>,
      });
      return { status: res.status, body: await res.json() };
    };
    const view = async (id: string) => await (await tm.api(`/api/v1/tasks/${id}`)).json() as TaskView;
    // The upstream: 3 frames, each held until a file appears, and a finalize step.
    const gate = join(work.path, "gate");
    const render = await submit({
      "task.toml": `[task]\ncommand = "while [ ! -e ${gate} ]; do sleep 0.05; done; echo f$PARALLELIC_INSTANCE > ` +
        `$PARALLELIC_OUTPUT/frame.txt"\ninstances = 3\n[finalize]\ncommand = "echo all > $PARALLELIC_OUTPUT/done"\n`,
    });
    assert.equal(render.status, 201, JSON.stringify(render.body));
    const up = render.body.id as string;

    // The dependent, from the CLI: a folder holding only task.toml, --after the upstream.
    const root = join(work.path, "encode");
    await Deno.mkdir(root);
    await Deno.writeTextFile(
      join(root, "task.toml"),
      `[task]\ncommand = "cat $PARALLELIC_UPSTREAM/${up}/*/frame.txt $PARALLELIC_UPSTREAM/${up}/finalize/done ` +
        `> $PARALLELIC_OUTPUT/joined.txt; touch $PARALLELIC_UPSTREAM/${up}/x 2>/dev/null && echo writable >> ` +
        `$PARALLELIC_OUTPUT/joined.txt; true"\n`,
    );
    const sub = await runCli(tm, "submit", root, "--no-wait", "--after", up);
    assert.equal(sub.code, 0, sub.stderr);
    const encode = sub.stdout.trim();
    const waiting = await view(encode);
    assert.equal(waiting.state, "queued");
    assert.deepEqual(waiting.waitingOn, [up]);
    const explained = (await (await tm.api(`/api/v1/tasks/${encode}/explain`)).json()).explanation;
    assert.match(explained, new RegExp(`Waits for task ${up} \\(running, 0 of 3 done\\) to succeed`));
    assert.match((await runCli(tm, "status", encode)).stdout, new RegExp(`queued \\(waits for ${up}\\)`));

    await Deno.writeTextFile(gate, "");
    assert.equal((await tm.waitForTask(up)).state, "succeeded");
    const encoded = await tm.waitForTask(encode);
    const first = (await listInstances(tm.api, encode))[0];
    assert.equal(encoded.state, "succeeded", JSON.stringify(first.history));
    const out = join(work.path, "out");
    assert.equal((await runCli(tm, "results", encode, "-o", out)).code, 0);
    assert.equal(await Deno.readTextFile(join(out, "0", "joined.txt")), "f0\nf1\nf2\nall\n", "read-only, in order");

    // Another submitter cannot name it: to them it does not exist.
    const bob = await tm.api("/api/v1/users", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ name: "bob", role: "submitter" }),
    });
    assert.equal(bob.status, 201);
    const theirs = await tm.api(`/api/v1/tasks?name=x&after=${up}`, {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: await makeZip({ "task.toml": `[task]\ncommand = "ls $PARALLELIC_UPSTREAM"\n` }) as Uint8Array<ArrayBuffer>,
      token: (await bob.json()).token,
    });
    assert.equal(theirs.status, 400);
    assert.match((await theirs.json()).error.message, new RegExp(`waits for task '${up}', which does not exist`));

    // A task waiting on the (finished) upstream and on a running one keeps the upstream from deletion.
    const slow = await submit({ "task.toml": `[task]\ncommand = "sleep 60"\n` });
    const both = await submit({
      "task.toml": `[task]\ncommand = "true"\n[after]\ntasks = ["${up}", "${slow.body.id}"]\n`,
    });
    assert.equal(both.status, 201, JSON.stringify(both.body));
    const del = await tm.api(`/api/v1/tasks/${up}`, { method: "DELETE" });
    assert.equal(del.status, 409);
    assert.match((await del.json()).error.message, new RegExp(`task ${both.body.id} \\(queued\\) waits for it`));
    // The running upstream is cancelled: its dependent is cancelled, naming it.
    assert.equal((await tm.api(`/api/v1/tasks/${slow.body.id}/cancel`, { method: "POST" })).status, 200);
    const cancelled = await tm.waitForTask(both.body.id);
    assert.equal(cancelled.state, "cancelled");
    assert.match(cancelled.reason!, new RegExp(`task ${slow.body.id} it waits for ended cancelled`));
    assert.equal((await tm.api(`/api/v1/tasks/${up}`, { method: "DELETE" })).status, 200);

    // Refused at submit: an unknown task, and one that ended otherwise than when asks.
    const unknown = await submit({ "task.toml": `[task]\ncommand = "true"\n` }, "&after=t0000000000000000");
    assert.equal(unknown.status, 400);
    assert.match(unknown.body.error.message, /waits for task 't0000000000000000', which does not exist/);
    const late = await submit({ "task.toml": `[task]\ncommand = "true"\n[after]\ntasks = ["${slow.body.id}"]\n` });
    assert.equal(late.status, 409);
    assert.match(late.body.error.message, /ended cancelled and when = "succeeded"/);
  },
});
