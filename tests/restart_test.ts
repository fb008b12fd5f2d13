/**
 * Restarts and second starts, end to end: a folder is held by one manager or
 * node at a time.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort, startNatsServer } from "../core/nats_server.ts";
import { createLogger } from "../core/log.ts";
import { newNkeyUser } from "../core/nats_auth.ts";
import { startManager } from "../manager/mod.ts";
import {
  makeZip,
  managerProcess,
  nodesReady,
  startMainProcess,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  TEST_TOKEN,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const quick = () => makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\ninstances = 3\n`, "r.sh": "#!/bin/sh\n" });

Deno.test({
  name: "a second manager on the same data dir exits naming the first one's pid; the first runs on untouched",
  ...opts,
  async fn() {
    await using work = await tempDir();
    const dataDir = join(work.path, "m");
    const natsPort = freePort();
    await using first = managerProcess(dataDir, [`--nats-port=${natsPort}`]);
    await first.start();
    await using second = startMainProcess(
      ["manager", `--data-dir=${dataDir}`, `--port=${freePort()}`, `--nats-port=${freePort()}`, "--no-local-node"],
      { env: { PARALLELIC_TOKEN: TEST_TOKEN } },
    );
    const { code } = await second.child.status;
    await second.kill(); // exited: waits until its output is read to the end
    assert.equal(code, 1, second.output());
    assert.match(
      second.output(),
      new RegExp(`data dir ${dataDir} is in use by another Parallelic process \\(pid ${first.pid}\\)`),
    );
    const joinToken = (await Deno.readTextFile(join(dataDir, "join-token"))).trim();
    await using _node = startNodeProcess(`nats://127.0.0.1:${natsPort}`, "n", join(work.path, "n"), [], {
      PARALLELIC_JOIN_TOKEN: joinToken,
    });
    await nodesReady(first.api, ["n"]);
    const id = await first.submit(await quick());
    assert.equal((await first.waitForTask(id)).state, "succeeded", "the first manager's NATS and store still work");
  },
});

Deno.test({
  name: "a second node on the same work dir exits naming the first one's pid; the first runs on untouched",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const dir = join(work.path, "n");
    await using first = startNodeProcess(tm.manager.natsUrl, "first", dir);
    await nodesReady(tm.api, ["first"]);
    await using second = startNodeProcess(tm.manager.natsUrl, "second", dir);
    const { code } = await second.child.status;
    await second.kill(); // exited: waits until its output is read to the end
    assert.equal(code, 1, second.output());
    assert.match(
      second.output(),
      new RegExp(`work dir ${dir} is in use by another Parallelic process \\(pid ${first.child.pid}\\)`),
    );
    const { id } = await (await submitZip(tm, await quick())).json();
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
  },
});

Deno.test({
  name: "a node with a truncated join token exits at once saying the token is malformed",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const token = tm.manager.joinToken!.slice(0, 30);
    await using node = startNodeProcess(tm.manager.natsUrl, "cut", join(work.path, "n"), [], {
      PARALLELIC_JOIN_TOKEN: token,
    });
    await waitUntil(() => node.output().includes("error:"), 15_000, "the node to say what is wrong");
    const { code } = await node.child.status;
    await node.kill(); // exited: waits until its output is read to the end
    assert.equal(code, 1);
    assert.match(node.output(), /The join token is malformed: it is 30 characters long instead of 58/);
  },
});

Deno.test({
  name: "a node given a wrong --nats address says so at once and keeps trying until a server answers there",
  ...opts,
  async fn() {
    await using work = await tempDir();
    const port = freePort();
    await using node = startNodeProcess(`nats://127.0.0.1:${port}`, "early", join(work.path, "n"), [], {
      PARALLELIC_JOIN_TOKEN: newNkeyUser().seed,
    });
    let exited = false;
    void node.child.status.then(() => exited = true);
    await waitUntil(() => /node:nats-unreachable/.test(node.output()), 15_000, "a message about the address");
    assert.match(node.output(), new RegExp(`nats://127\\.0\\.0\\.1:${port}`), "the message names the address");
    assert.match(node.output(), /is the manager running/);
    assert.equal(exited, false, "it keeps trying");
  },
});

Deno.test({
  name: "a manager whose NATS server comes up late retries the first connect, saying so, and starts",
  ...opts,
  async fn() {
    await using work = await tempDir();
    const port = freePort();
    const lines: string[] = [];
    const starting = startManager({
      dataDir: join(work.path, "m"),
      port: 0,
      natsUrl: `nats://127.0.0.1:${port}`,
      localNode: false,
      token: TEST_TOKEN,
      log: createLogger({ level: "warn", write: (l) => lines.push(l) }),
    });
    await waitUntil(() => lines.some((l) => l.includes("manager:nats-unreachable")), 15_000, "a visible retry");
    const nats = await startNatsServer({ storeDir: join(work.path, "js"), port });
    try {
      const manager = await starting;
      await manager.stop();
    } finally {
      await nats.stop();
    }
  },
});

/** Whether process `pid` lives (a zombie counts as gone). */
function alive(pid: number): boolean {
  try {
    return !/^\d+ \(.*\) Z/.test(Deno.readTextFileSync(`/proc/${pid}/stat`));
  } catch {
    return false;
  }
}

Deno.test({
  name: "a node killed with SIGKILL and restarted on its work dir kills what its previous run left, escapees too",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ leaseMs: 3000 });
    await using work = await tempDir();
    const mark = join(work.path, "mark");
    await Deno.mkdir(mark);
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 1\n[env]\nMARK = "${mark}"\n`,
      "run.sh": `#!/bin/sh
setsid sh -c 'echo $$ > "$MARK/escaped.$PARALLELIC_ATTEMPT"; exec sleep 300' &
echo $$ > "$MARK/main.$PARALLELIC_ATTEMPT"
exec sleep 300
`,
    });
    const dir = join(work.path, "n");
    const first = startNodeProcess(tm.manager.natsUrl, "n", dir);
    await nodesReady(tm.api, ["n"]);
    const { id } = await (await submitZip(tm, zip)).json();
    const pidOf = (file: string) => Number(Deno.readTextFileSync(join(mark, file)).trim());
    const pids = await waitUntil(() => {
      try {
        return [pidOf("main.0"), pidOf("escaped.0")];
      } catch {
        return null;
      }
    });
    try {
      await first.kill("SIGKILL");
      assert.ok(pids.every(alive), "the instance's processes outlived the node");
      await using _again = startNodeProcess(tm.manager.natsUrl, "n", dir);
      await waitUntil(() => !pids.some(alive), 15_000, "the leftovers to be killed");
      const res = await tm.api(`/api/v1/tasks/${id}/cancel`, { method: "POST" });
      assert.equal(res.status, 200);
      assert.equal((await tm.waitForTask(id)).state, "cancelled");
    } finally {
      for (const pid of pids) {
        try {
          Deno.kill(pid, "SIGKILL");
        } catch { /* gone */ }
      }
    }
  },
});

Deno.test({
  name: "a manager killed with SIGKILL and restarted 2 s later comes up on its data dir, again and again",
  ...opts,
  async fn() {
    await using work = await tempDir();
    await using manager = managerProcess(join(work.path, "m"), [`--nats-port=${freePort()}`]);
    await manager.start();
    const id = await manager.submit(await quick());
    for (let round = 0; round < 3; round++) {
      await manager.stop("SIGKILL");
      await new Promise((r) => setTimeout(r, 2000));
      await manager.start();
    }
    const task = await (await manager.api(`/api/v1/tasks/${id}`)).json();
    assert.equal(task.id, id, "what it stored before is still there");
  },
});
