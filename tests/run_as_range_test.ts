/**
 * End to end: a root node with `--run-as-range` runs each task as a uid of
 * its own, and one task's instances cannot reach another's folders, outputs
 * or processes, the node's key, or the data sets it caches.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  listInstances,
  makeZip,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  type TestManager,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false, ignore: Deno.build.os !== "linux" };
const skipped = () => {
  if (Deno.uid() === 0) return false;
  console.log("skipped: --run-as-range needs the test to run as root (the node switches to the range's uids)");
  return true;
};

/** A task whose instance prints who it is and where its folders are, then waits until `go` appears in its root. */
const waiter = (extra = "") =>
  makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\n[data]\nd = "shared"\n`,
    "run.sh": `#!/bin/sh
echo "uid=$(id -u) gid=$(id -g) groups=$(id -G) pid=$$"
echo "root=$PARALLELIC_TASK_ROOT"
echo "out=$PARALLELIC_OUTPUT"
echo "tmp=$TMPDIR"
echo secret-a > "$PARALLELIC_TASK_ROOT/secret"
echo secret-a > "$PARALLELIC_OUTPUT/secret"
echo secret-a > "$TMPDIR/secret"
${extra}
echo ready
i=0; while [ ! -e "$PARALLELIC_TASK_ROOT/go" ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
`,
  });

const logOf = async (tm: TestManager, id: string) =>
  await (await tm.api(`/api/v1/tasks/${id}/instances/0/logs`)).text();
const field = (log: string, name: string) => new RegExp(`^${name}=(\\S+)`, "m").exec(log)?.[1] ?? "";

/** Stores data set `shared`, and starts a node under `workPath` with `--run-as-range=RANGE` and 2 slots. */
async function startRangedNode(tm: TestManager, workPath: string, name: string, range: string) {
  await Deno.chmod(workPath, 0o711);
  const dir = join(workPath, "shared");
  await Deno.mkdir(dir);
  await Deno.writeTextFile(join(dir, "f.txt"), "shared data");
  const put = await runCli(tm, "data", "put", "shared", dir);
  assert.equal(put.code, 0, put.stderr);
  const node = startNodeProcess(tm.manager.natsUrl, name, join(workPath, "n"), [
    `--run-as-range=${range}`,
    "--slots=2",
  ]);
  await waitUntil(() => /node:registered/.test(node.output()), 20_000, "the node");
  return node;
}

/** The log of a task started with {@linkcode waiter}, once it is waiting. */
const waitingLog = (tm: TestManager, id: string) =>
  waitUntil(
    async () => {
      const log = await logOf(tm, id);
      return /^ready$/m.test(log) ? log : null;
    },
    30_000,
    "the waiting task to run",
  );

Deno.test({
  name: "--run-as-range: two tasks at once get their own uids and cannot reach each other, the node's key or the cache",
  ...opts,
  async fn() {
    if (skipped()) return;
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using _node = await startRangedNode(tm, work.path, "ranged", "20100-20101");
    const nodeDir = join(work.path, "n");

    const a = (await (await submitZip(tm, await waiter())).json()).id;
    const logA = await waitingLog(tm, a);

    const probe = `#!/bin/sh
echo "uid=$(id -u)"
export NODE_PID=$PPID
try() { if sh -c "$2" >/dev/null 2>&1; then echo "$1=allowed"; else echo "$1=denied"; fi; }
try read-root 'cat "$A_ROOT/secret"'
try list-root 'ls "$A_ROOT"'
try write-root 'echo x > "$A_ROOT/planted"'
try read-out 'cat "$A_OUT/secret"'
try write-out 'echo x > "$A_OUT/planted"'
try read-tmp 'cat "$A_TMP/secret"'
try list-user-dir 'ls "$(dirname "$A_ROOT")"'
try signal-a 'kill -0 "$A_PID"'
try read-key 'cat "$NODE_DIR/node.nkey"'
try list-work-dir 'ls "$NODE_DIR"'
try node-env 'cat /proc/$NODE_PID/environ'
try node-memory 'od -N1 /proc/$NODE_PID/maps'
try list-runs 'ls "$NODE_DIR/runs"'
try list-packages 'ls "$NODE_DIR/packages"'
try list-data 'ls "$NODE_DIR/data"'
try read-data 'cat "$PARALLELIC_DATA_D/f.txt"'
try write-data 'echo x >> "$PARALLELIC_DATA_D/f.txt"'
try add-data 'touch "$PARALLELIC_DATA_D/new"'
try remove-data 'rm -f "$PARALLELIC_DATA_D/f.txt"'
try chmod-data 'chmod 666 "$PARALLELIC_DATA_D/f.txt"'
try own-root 'echo x > "$PARALLELIC_TASK_ROOT/mine"'
try own-out 'echo x > "$PARALLELIC_OUTPUT/mine"'
try own-tmp 'echo x > "$TMPDIR/mine"'
`;
    const env = {
      A_ROOT: field(logA, "root"),
      A_OUT: field(logA, "out"),
      A_TMP: field(logA, "tmp"),
      A_PID: /pid=(\d+)/.exec(logA)![1],
      NODE_DIR: nodeDir,
    };
    const toml = `[task]\nentrypoint = "run.sh"\n[data]\nd = "shared"\n[env]\n${
      Object.entries(env).map(([k, v]) => `${k} = "${v}"`).join("\n")
    }\n`;
    const b = (await (await submitZip(tm, await makeZip({ "task.toml": toml, "run.sh": probe }))).json()).id;
    assert.equal((await tm.waitForTask(b)).state, "succeeded");
    const logB = await logOf(tm, b);

    const uidA = Number(field(logA, "uid"));
    const uidB = Number(field(logB, "uid"));
    assert.ok(uidA >= 20100 && uidA <= 20101 && uidB >= 20100 && uidB <= 20101, `uids ${uidA}, ${uidB}`);
    assert.notEqual(uidA, uidB, "each task has its own uid");
    assert.match(logA, new RegExp(`gid=${uidA} groups=${uidA} `), "its own group and no other");
    const denied = [
      "read-root",
      "list-root",
      "write-root",
      "read-out",
      "write-out",
      "read-tmp",
      "list-user-dir",
      "signal-a",
      "read-key",
      "list-work-dir",
      "node-env",
      "node-memory",
      "list-runs",
      "list-packages",
      "list-data",
      "write-data",
      "add-data",
      "remove-data",
      "chmod-data",
    ];
    for (const what of denied) assert.match(logB, new RegExp(`^${what}=denied$`, "m"), `${what}:\n${logB}`);
    for (const what of ["read-data", "own-root", "own-out", "own-tmp"]) {
      assert.match(logB, new RegExp(`^${what}=allowed$`, "m"), `${what}:\n${logB}`);
    }

    await Deno.writeTextFile(join(env.A_ROOT, "go"), "");
    assert.equal((await tm.waitForTask(a)).state, "succeeded");
    assert.equal(await Deno.readTextFile(join(nodeDir, "data", await dataHex(tm), "f.txt")), "shared data");

    // Both uids are back: a third task gets one of them again.
    const c = (await (await submitZip(
      tm,
      await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\n`,
        "run.sh": `#!/bin/sh\necho "uid=$(id -u)"\nls -A "$HOME" "$TMPDIR"\n`,
      }),
    )).json()).id;
    assert.equal((await tm.waitForTask(c)).state, "succeeded");
    const logC = await logOf(tm, c);
    assert.ok([uidA, uidB].includes(Number(field(logC, "uid"))), logC);
    assert.doesNotMatch(logC, /secret|mine/, "nothing the last task given that uid left in HOME or TMPDIR");
  },
});

/** The hex of the shared data set's only version. */
async function dataHex(tm: TestManager): Promise<string> {
  const set = await (await tm.api("/api/v1/data/shared")).json() as { versions: Array<{ version: string }> };
  return set.versions[0].version.slice("sha256:".length);
}

Deno.test({
  name: "--run-as-range: with every uid lent, a task's instances wait for one (not fail), its processes gone",
  ...opts,
  async fn() {
    if (skipped()) return;
    await using tm = await startTestManager();
    await using work = await tempDir();
    await using _node = await startRangedNode(tm, work.path, "one-uid", "20110-20110");
    // Task a leaves a process behind that escaped its process group and session.
    const a = (await (await submitZip(tm, await waiter("setsid sh -c 'sleep 300; : leftover-marker' &"))).json()).id;
    const logA = await waitingLog(tm, a);
    const b = (await (await submitZip(
      tm,
      await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\n`,
        "run.sh": `#!/bin/sh
echo "uid=$(id -u)"
for p in /proc/[0-9]*; do grep -qa leftover-marker "$p/cmdline" 2>/dev/null && echo "leftover=$p"; done
echo done
`,
      }),
    )).json()).id;
    // b is assigned to the node (its only one) while a runs; it must wait there.
    await waitUntil(async () => (await listInstances(tm.api, b))[0].node === "one-uid", 20_000, "b to be assigned");
    await Deno.writeTextFile(join(field(logA, "root"), "go"), "");
    assert.equal((await tm.waitForTask(a)).state, "succeeded");
    assert.equal((await tm.waitForTask(b)).state, "succeeded");
    const logB = await logOf(tm, b);
    assert.equal(field(logB, "uid"), "20110", "b got the uid a returned");
    assert.doesNotMatch(logB, /leftover=/, "what a left running was killed before its uid was lent again");
    const [ia] = await listInstances(tm.api, a);
    const [ib] = await listInstances(tm.api, b);
    assert.equal(ib.attempt, 0, "b never failed");
    assert.ok(ib.startedAt! >= ia.endedAt!, "b started once a had ended");
  },
});

Deno.test({
  name: "a node refuses a bad --run-as-range at start, saying what is wrong and how to fix it",
  ...opts,
  async fn() {
    await using work = await tempDir();
    for (
      const [flags, message] of [
        [["--run-as-range=100-200"], /--run-as-range '100-200' as it starts below 1000, where system users live/],
        [
          ["--run-as-range=20000"],
          /--run-as-range '20000' as it is not FIRST-LAST in whole numbers: e\.g\. 20000-29999/,
        ],
        [["--run-as=nobody", "--run-as-range=20000-20009"], /--run-as 'nobody' with --run-as-range .*: choose one/],
      ] as const
    ) {
      const node = startNodeProcess("nats://127.0.0.1:1", "refused", join(work.path, "n"), [...flags]);
      assert.equal((await node.child.status).code, 1);
      await node.kill();
      assert.match(node.output(), message);
    }
  },
});
