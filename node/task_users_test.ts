import assert from "node:assert/strict";
import { join } from "node:path";
import { createLogger } from "../core/log.ts";
import { ValidationError } from "../core/errors.ts";
import { createTaskUsers, parseRunAsRange, processesOf, resolveRunAsRange } from "./task_users.ts";

const isRoot = Deno.build.os === "linux" && Deno.uid() === 0;
const rootOnly = { ignore: !isRoot, sanitizeOps: false, sanitizeResources: false };

const refused = (fn: () => unknown, pattern: RegExp) =>
  assert.throws(fn, (e: unknown) => e instanceof ValidationError && pattern.test(e.message));

Deno.test("--run-as-range is FIRST-LAST of unprivileged uids; anything else is refused saying how to fix it", () => {
  assert.deepEqual(parseRunAsRange("20000-29999"), { first: 20000, last: 29999 });
  assert.deepEqual(parseRunAsRange(" 20000 - 20000 "), { first: 20000, last: 20000 });
  refused(() => parseRunAsRange("20000"), /'20000' as it is not FIRST-LAST in whole numbers: e\.g\. 20000-29999/);
  refused(() => parseRunAsRange("20000-2x"), /not FIRST-LAST/);
  refused(() => parseRunAsRange("-5-10"), /not FIRST-LAST/);
  refused(
    () => parseRunAsRange("29999-20000"),
    /first uid is above its last: write the lower one first, e\.g\. 20000-29999/,
  );
  refused(() => parseRunAsRange("0-100"), /starts below 1000, where system users live/);
  refused(() => parseRunAsRange("20000-4294967295"), /ends above 2147483646/);
});

Deno.test("--run-as-range needs a root node, no --run-as beside it, and ids no account uses", () => {
  refused(
    () => resolveRunAsRange("20000-29999", { uid: 1000 }),
    /--run-as-range '20000-29999' as the node is not running as root \(uid 1000\): start the node as root/,
  );
  refused(
    () => resolveRunAsRange("20000-29999", { runAs: "render" }),
    /--run-as 'render' with --run-as-range.*choose one/,
  );
  if (!isRoot) return;
  // nobody (65534) exists on every Linux system this runs on.
  refused(() => resolveRunAsRange("60000-65534"), /user 'nobody' \(65534\) already use ids in it \(getent passwd\)/);
  assert.equal(resolveRunAsRange("20000-20009").first, 20000);
});

Deno.test({
  name:
    "task users: one uid per task, held per instance, waited for when all are lent, killed and reused once returned",
  ...rootOnly,
  async fn() {
    const runs = await Deno.makeTempDir();
    await Deno.chmod(runs, 0o711);
    // A folder every user may write into, as /tmp.
    const shared = await Deno.makeTempDir();
    await Deno.chmod(shared, 0o1777);
    const returned: number[] = [];
    let frees = 0;
    const users = createTaskUsers({
      range: resolveRunAsRange("20000-20001"),
      runsDir: runs,
      onReturn: (u) => returned.push(u.uid),
      onFree: () => frees++,
      log: createLogger({ level: "error" }),
      sharedDirs: [shared],
    });
    try {
      const a = users.hold("task-a")!;
      const b = users.hold("task-b")!;
      assert.notEqual(a.uid, b.uid);
      assert.equal(users.hold("task-a")!.uid, a.uid, "a second instance of a task gets the task's uid");
      assert.equal(users.hold("task-c"), null, "the range is lent out: task c waits");
      await a.ready;
      const dir = await Deno.stat(a.dir!);
      assert.deepEqual([dir.uid, dir.gid, dir.mode! & 0o777], [0, a.uid, 0o710]);
      const home = await Deno.stat(a.home);
      assert.deepEqual([home.uid, home.gid, home.mode! & 0o777], [a.uid, a.uid, 0o700]);

      // A process of task a that left its group and session (as `setsid cmd &` does) lives on as its uid.
      const escaped = new Deno.Command(a.setpriv, {
        args: [`--reuid=${a.uid}`, `--regid=${a.uid}`, "--clear-groups", "--", "setsid", "sleep", "300"],
        stdout: "null",
        stderr: "null",
      }).spawn();
      while (processesOf(a.uid).length === 0) await new Promise((r) => setTimeout(r, 10));
      // Files it left where every user may write, and one of someone else's.
      await Deno.mkdir(join(shared, "a-cache"));
      await Deno.writeTextFile(join(shared, "a-cache", "x"), "a's");
      await Deno.chown(join(shared, "a-cache"), a.uid, a.uid);
      await Deno.writeTextFile(join(shared, "other"), "root's");

      users.unhold("task-a");
      await users.settled();
      assert.equal(users.lent, 2, "task a still has an instance");
      assert.equal(processesOf(a.uid).length, 1);
      users.unhold("task-a");
      await users.settled();
      assert.deepEqual(returned, [a.uid]);
      assert.equal(frees, 1);
      assert.deepEqual(processesOf(a.uid), [], "what ran as the uid is gone with it");
      assert.equal((await escaped.status).signal, "SIGKILL");
      await assert.rejects(Deno.stat(a.dir!), Deno.errors.NotFound);
      assert.deepEqual([...Deno.readDirSync(shared)].map((e) => e.name), ["other"], "a's files in shared folders gone");

      const c = users.hold("task-c")!;
      assert.equal(c.uid, a.uid, "task c gets the uid task a returned");
      await c.ready;
      assert.deepEqual([...Deno.readDirSync(c.home)], [], "and nothing task a left");
      users.unhold("task-b");
      users.unhold("task-c");
      await users.settled();
      assert.equal(users.lent, 0);
    } finally {
      await Deno.remove(runs, { recursive: true });
      await Deno.remove(shared, { recursive: true });
    }
  },
});

Deno.test({
  name: "task users: processes an earlier run of the node left as uids of the range are killed at start",
  ...rootOnly,
  async fn() {
    const range = resolveRunAsRange("20010-20019");
    const left = new Deno.Command(range.setpriv, {
      args: ["--reuid=20013", "--regid=20013", "--clear-groups", "--", "sleep", "300"],
      stdout: "null",
      stderr: "null",
    }).spawn();
    while (processesOf(20013).length === 0) await new Promise((r) => setTimeout(r, 10));
    const users = createTaskUsers({
      range,
      runsDir: join("/nonexistent"),
      onReturn: () => {},
      onFree: () => {},
      log: createLogger({ level: "error" }),
    });
    await users.sweep();
    assert.deepEqual(processesOf(20013), []);
    assert.equal((await left.status).signal, "SIGKILL");
  },
});
