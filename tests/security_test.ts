/**
 * Security rules against a real manager (embedded nats-server with its
 * generated users, Deno KV, gateway) and real nodes: roles, tokens, the
 * audit log, gateway limits, node authentication and NATS permissions.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { NatsConnection } from "@nats-io/transport-node";
import type { AuditEntry } from "../core/audit.ts";
import { newNkeyUser } from "../core/nats_auth.ts";
import { connectNats } from "../core/nats_connect.ts";
import type { TaskView } from "../core/schema.ts";
import { startNode } from "../node/agent.ts";
import { connectNode } from "../node/join.ts";
import {
  makeZip,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  TEST_TOKEN,
  testLogger,
  type TestManager,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const TASK = (seconds = 0) =>
  makeZip({
    "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 2\n`,
    "run.sh": `#!/bin/sh\necho "instance $PARALLELIC_INSTANCE"\nsleep ${seconds}\n`,
  });

async function addUser(tm: TestManager, name: string, role: string): Promise<string> {
  const res = await tm.api("/api/v1/users", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name, role }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).token;
}

async function status(tm: TestManager, token: string | null, path: string, init: RequestInit = {}) {
  const res = await tm.api(path, { ...init, token });
  await res.body?.cancel();
  return res.status;
}

Deno.test({
  name: "each role gets what it may and nothing more; another user's task is 404 on every route",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    const alice = await addUser(tm, "alice", "submitter");
    const bob = await addUser(tm, "bob", "submitter");
    const victor = await addUser(tm, "victor", "viewer");
    const adam = await addUser(tm, "adam", "admin");
    const submit = async (token: string, seconds = 0) => {
      const res = await tm.api("/api/v1/tasks?name=t", {
        method: "POST",
        headers: { "content-type": "application/zip" },
        body: await TASK(seconds) as Uint8Array<ArrayBuffer>,
        token,
      });
      assert.equal(res.status, 201, await res.clone().text());
      return (await res.json()).id as string;
    };
    const aliceTask = await submit(alice);
    const bobTask = await submit(bob, 30);
    await tm.waitForTask(aliceTask);

    // A submitter sees, follows and cancels only their own tasks; another's is 404 everywhere.
    const missing = "t0000000000000000";
    for (const path of ["", "/instances", "/instances/0", "/instances/0/logs"]) {
      assert.equal(await status(tm, alice, `/api/v1/tasks/${aliceTask}${path}`), 200, `own ${path}`);
      assert.equal(await status(tm, alice, `/api/v1/tasks/${bobTask}${path}`), 404, `other's ${path}`);
    }
    const hidden = await (await tm.api(`/api/v1/tasks/${bobTask}`, { token: alice })).json();
    const absent = await (await tm.api(`/api/v1/tasks/${missing}`, { token: alice })).json();
    assert.equal(hidden.error.code, absent.error.code, "another's task looks exactly like a missing one");
    assert.equal(await status(tm, alice, `/api/v1/tasks/${bobTask}/cancel`, { method: "POST" }), 404);
    const aliceList = (await (await tm.api("/api/v1/tasks", { token: alice })).json()).tasks as TaskView[];
    assert.deepEqual(aliceList.map((t) => t.id), [aliceTask]);
    for (
      const [method, path] of [
        ["GET", "/api/v1/users"],
        ["GET", "/api/v1/audit"],
        ["GET", "/api/v1/nodes/join-token"],
        ["POST", "/api/v1/nodes/local/drain"],
        ["POST", "/api/v1/users/bob/token"],
      ]
    ) {
      assert.equal(await status(tm, alice, path, { method }), 403, `submitter ${method} ${path}`);
    }

    // A viewer reads everything and changes nothing.
    assert.equal(await status(tm, victor, `/api/v1/tasks/${bobTask}`), 200);
    assert.equal(await status(tm, victor, `/api/v1/tasks/${aliceTask}/instances/1/logs`), 200);
    assert.equal((await (await tm.api("/api/v1/tasks", { token: victor })).json()).tasks.length, 2);
    assert.equal(await status(tm, victor, "/api/v1/nodes"), 200);
    const refused = await tm.api("/api/v1/tasks", {
      method: "POST",
      body: await TASK() as Uint8Array<ArrayBuffer>,
      token: victor,
    });
    assert.equal(refused.status, 403);
    assert.match((await refused.json()).error.message, /role 'viewer' may not: it needs 'submitter'/);
    assert.equal(await status(tm, victor, `/api/v1/tasks/${bobTask}/cancel`, { method: "POST" }), 403);
    assert.equal(await status(tm, victor, "/api/v1/users"), 403);

    // An admin does everything, including cancelling another user's task.
    assert.equal(await status(tm, adam, "/api/v1/users"), 200);
    assert.equal(await status(tm, adam, `/api/v1/tasks/${bobTask}/cancel`, { method: "POST" }), 200);
    assert.equal(await status(tm, adam, "/api/v1/nodes/local/drain", { method: "POST" }), 200);
    assert.equal(await status(tm, adam, "/api/v1/nodes/local/resume", { method: "POST" }), 200);

    // Missing or wrong tokens: 401, with no hint of which tasks exist.
    const wrongExisting = await tm.api(`/api/v1/tasks/${bobTask}`, { token: "nope" });
    const wrongMissing = await tm.api(`/api/v1/tasks/${missing}`, { token: "nope" });
    assert.equal(wrongExisting.status, 401);
    assert.deepEqual(await wrongExisting.json(), await wrongMissing.json());
    assert.equal(await status(tm, null, "/api/v1/nodes"), 401);
    assert.equal(await status(tm, null, "/healthz"), 200);

    // Tokens: rotation replaces at once, removal revokes; the last admin stays.
    const rotated = await (await tm.api("/api/v1/users/alice/token", { method: "POST" })).json();
    assert.equal(await status(tm, alice, "/api/v1/tasks"), 401, "the old token is dead");
    assert.equal(await status(tm, rotated.token, "/api/v1/tasks"), 200);
    assert.equal(await status(tm, null, "/api/v1/users/bob", { method: "DELETE" }), 401);
    const removed = await tm.api("/api/v1/users/bob", { method: "DELETE" });
    assert.equal(removed.status, 200);
    assert.equal(await status(tm, bob, "/api/v1/tasks"), 401);
    assert.equal(await status(tm, adam, "/api/v1/users/adam", { method: "DELETE" }), 200);
    const last = await tm.api("/api/v1/users/admin", { method: "DELETE" });
    assert.equal(last.status, 409);
    assert.match((await last.json()).error.message, /last admin/);
    const users = (await (await tm.api("/api/v1/users")).json()).users;
    assert.deepEqual(users.map((u: { name: string }) => u.name).sort(), ["admin", "alice", "victor"]);
    assert.ok(users.every((u: Record<string, unknown>) => !("tokenHash" in u)), "hashes never leave the manager");

    // The audit log says who did what, when, from where.
    const { entries } = await (await tm.api("/api/v1/audit?limit=1000")).json() as { entries: AuditEntry[] };
    const find = (action: string, user: string | null, target?: string) =>
      entries.find((e) => e.action === action && e.user === user && (target === undefined || e.target === target));
    assert.ok(find("task.submit", "alice", aliceTask), "alice's submit");
    assert.ok(find("task.cancel", "adam", bobTask), "adam's cancel");
    assert.ok(find("user.add", "admin", "victor"));
    assert.ok(find("token.rotate", "admin", "alice"));
    assert.ok(find("user.remove", "admin", "bob"));
    const failed = find("auth.failed", null, `GET /api/v1/tasks/${bobTask}`);
    assert.ok(failed, "a failed authentication");
    assert.equal(failed.address, "127.0.0.1");
    assert.ok(Math.abs(failed.at - Date.now()) < 60_000);
    assert.ok(entries.every((e) => !JSON.stringify(e).includes("nope")), "no token is kept, not even a wrong one");
  },
});

Deno.test({
  name: "the gateway refuses a body over its limit with 413 and a caller over its rate with 429 and Retry-After",
  ...opts,
  async fn() {
    await using tm = await startTestManager({
      gateway: { maxBodyBytes: 64 * 1024, rate: { perSecond: 1, burst: 5 }, failureRate: { perSecond: 1, burst: 3 } },
    });
    const big = await tm.api("/api/v1/tasks", { method: "POST", body: new Uint8Array(100 * 1024) });
    assert.equal(big.status, 413);
    assert.match((await big.json()).error.message, /size 102400 bytes exceeds the limit of 65536 bytes/);
    // Streamed without a length: counted as it comes.
    const stream = new ReadableStream({
      start(c) {
        for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(16 * 1024));
        c.close();
      },
    });
    const chunked = await tm.api("/api/v1/tasks", { method: "POST", body: stream });
    assert.equal(chunked.status, 413);
    assert.equal((await chunked.json()).error.code, "body_too_large");
    const viewer = await addUser(tm, "v", "viewer");
    let limited: Response | undefined;
    for (let i = 0; i < 10 && !limited; i++) {
      const res = await tm.api("/api/v1/nodes");
      if (res.status === 429) limited = res;
      else await res.body?.cancel();
    }
    assert.ok(limited, "the admin token ran out of requests");
    assert.ok(Number(limited.headers.get("retry-after")) >= 1);
    assert.equal((await limited.json()).error.code, "rate_limited");
    assert.equal(await status(tm, viewer, "/api/v1/nodes"), 200, "another token has its own bucket");
    // Wrong tokens are limited per address, before they fill the audit log.
    const codes: number[] = [];
    for (let i = 0; i < 6; i++) codes.push(await status(tm, "wrong", "/api/v1/tasks"));
    assert.deepEqual(codes.slice(0, 3), [401, 401, 401]);
    assert.ok(codes.includes(429), `later wrong tokens are rate limited: ${codes}`);
    await new Promise((r) => setTimeout(r, 1100));
    const stats = await (await tm.api("/api/v1/stats", { token: viewer })).json();
    assert.ok(
      stats.gateway.tooLarge >= 2 && stats.gateway.rateLimited >= 2 && stats.gateway.unauthorized >= 3,
      JSON.stringify(stats),
    );
    assert.equal(typeof stats.bus.rejected, "number");
  },
});

Deno.test({
  name: "NATS admits no anonymous client, and a node with a wrong or no join token is refused",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    await assert.rejects(
      connectNats({ servers: tm.manager.natsUrl, name: "anon", reconnect: false }),
      (e: Error) => e.name === "AuthorizationError",
    );
    await assert.rejects(
      connectNats({
        servers: tm.manager.natsUrl,
        name: "stranger",
        credentials: { seed: newNkeyUser().seed },
        reconnect: false,
      }),
      (e: Error) => e.name === "AuthorizationError",
    );
    const wrong = startNodeProcess(tm.manager.natsUrl, "intruder", join(work.path, "w"), [], {
      PARALLELIC_JOIN_TOKEN: newNkeyUser().seed,
    });
    assert.equal((await wrong.child.status).code, 1);
    await wrong.kill();
    assert.match(wrong.output(), /Cannot join as node 'intruder': NATS refused the join token/);
    const none = startNodeProcess(tm.manager.natsUrl, "tokenless", join(work.path, "n"), [], {
      PARALLELIC_JOIN_TOKEN: "",
    });
    assert.equal((await none.child.status).code, 1);
    await none.kill();
    assert.match(none.output(), /not known to this manager's NATS server yet: start it with the join token/);
    const { nodes } = await (await tm.api("/api/v1/nodes")).json();
    assert.deepEqual(nodes, [], "neither joined");
    // A real join token works, and the node needs it only once: its own key is kept.
    await using good = startNodeProcess(tm.manager.natsUrl, "good", join(work.path, "g"));
    await waitUntil(() => /node:registered/.test(good.output()), 20_000, "the node to register");
    assert.equal((await Deno.stat(join(work.path, "g", "node.nkey"))).mode! & 0o777, 0o600);
    await good.kill();
    await using again = startNodeProcess(tm.manager.natsUrl, "good", join(work.path, "g"), [], {
      PARALLELIC_JOIN_TOKEN: "",
    });
    await waitUntil(() => /node:registered/.test(again.output()), 20_000, "the node to come back without the token");
    assert.doesNotMatch(again.output(), /node:joining/);
  },
});

Deno.test({
  name: "a node may speak only on its own subjects: NATS refuses the rest, and a forged sender is dropped",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const log = testLogger();
    const joinToken = tm.manager.joinToken!;
    const nc: NatsConnection = await connectNode({
      natsUrl: tm.manager.natsUrl,
      name: "mallory",
      workDir: join(work.path, "m"),
      joinToken,
      version: "test",
      log,
    });
    const violations: string[] = [];
    (async () => {
      for await (const s of nc.status()) {
        if (s.type === "error" && s.error.name === "PermissionViolationError") {
          violations.push(
            (s.error as { operation?: string; subject?: string }).operation + " " +
              (s.error as { subject?: string }).subject,
          );
        }
      }
    })();
    const submit = JSON.stringify({ digest: `sha256-${"0".repeat(64)}`, packageBytes: 1, owner: "admin", spec: {} });
    nc.publish("parallelic.task.submit", submit);
    nc.publish("parallelic.task.cancel", JSON.stringify({ taskId: "t0000000000000000", by: "admin" }));
    nc.publish(
      "parallelic.node.local.heartbeat",
      JSON.stringify({ name: "local", sentAt: 0, usedSlots: 0, holding: [] }),
    );
    nc.publish("$O.parallelic-packages.C.x", "chunk");
    nc.subscribe("parallelic.node.other.assign");
    nc.subscribe("_INBOX.>");
    nc.subscribe("parallelic.log.>");
    await nc.flush().catch(() => {});
    await waitUntil(() => violations.length >= 7, 10_000, `7 permission violations (got ${violations})`);
    assert.ok(violations.includes("publish parallelic.task.submit"), String(violations));
    assert.ok(violations.includes("subscription _INBOX.>"), String(violations));
    // On its own subject, claiming another node's name is dropped by the bus and counted.
    const before = (await (await tm.api("/api/v1/stats")).json()).bus.rejected;
    nc.publish(
      "parallelic.node.mallory.heartbeat",
      JSON.stringify({ name: "local", sentAt: 0, usedSlots: 0, holding: [] }),
    );
    await nc.flush();
    await waitUntil(
      async () => (await (await tm.api("/api/v1/stats")).json()).bus.rejected > before,
      10_000,
      "a rejection",
    );
    // Another key may not take a live node's name.
    const twin = await startNode({
      natsUrl: tm.manager.natsUrl,
      name: "twin",
      workDir: join(work.path, "t1"),
      joinToken,
      log,
      slots: 1,
    });
    await twin.registered;
    await assert.rejects(
      connectNode({
        natsUrl: tm.manager.natsUrl,
        name: "twin",
        workDir: join(work.path, "t2"),
        joinToken,
        version: "test",
        log,
      }),
      /Cannot let node 'twin' join as a live node of that name joined with another key/,
    );
    await twin.stop();
    const audit = (await (await tm.api("/api/v1/audit")).json()).entries as AuditEntry[];
    assert.ok(audit.some((e) => e.action === "node.join" && e.target === "mallory"));
    assert.ok(audit.some((e) => e.action === "node.join-refused" && e.target === "twin"));
    assert.equal((await tm.api("/api/v1/nodes/mallory/forget", { method: "POST" })).status, 200);
    // Forgotten: NATS drops the user at once, and the node cannot come back without the join token.
    await waitUntil(() => nc.isClosed(), 10_000, "the forgotten node to be disconnected");
    await nc.close().catch(() => {});
  },
});

Deno.test({
  name: "an instance's environment holds none of the node's secrets",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    // The node holds the join token (PARALLELIC_JOIN_TOKEN, from the test kit), an API token, and a cloud key.
    const secrets = {
      PARALLELIC_TOKEN: "leak-api-token-7f3a",
      AWS_SECRET_ACCESS_KEY: "leak-aws-key-55de",
      // Read only with --nats-user; here it is just a secret the node's environment holds.
      PARALLELIC_NATS_PASSWORD: "leak-nats-password-3b9e",
      LEAKY_SECRET: "leak-other-91c2",
    };
    await using node = startNodeProcess(tm.manager.natsUrl, "envnode", join(work.path, "n"), [], secrets);
    await waitUntil(() => /node:registered/.test(node.output()), 20_000, "the node");
    const res = await submitZip(
      tm,
      await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\nenv\n" }),
    );
    const id = (await res.json()).id;
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
    const env = await (await tm.api(`/api/v1/tasks/${id}/instances/0/logs`)).text();
    assert.match(env, /PARALLELIC_INSTANCE=0/, "the log is the instance's environment");
    const joinToken = tm.manager.joinToken!;
    for (const value of [...Object.values(secrets), joinToken, TEST_TOKEN]) {
      assert.ok(!env.includes(value), `the instance sees '${value.slice(0, 12)}…'`);
    }
    for (const name of ["PARALLELIC_TOKEN", "PARALLELIC_JOIN_TOKEN", "PARALLELIC_NATS", "LEAKY_SECRET", "AWS_"]) {
      assert.doesNotMatch(env, new RegExp(`^${name}`, "m"), `${name} leaked`);
    }
  },
});

Deno.test({
  name: "a root node runs instances as another user (--run-as), who cannot read the node's key",
  ...opts,
  ignore: Deno.build.os !== "linux",
  async fn() {
    if (Deno.uid() !== 0) {
      console.log("skipped: --run-as needs the test to run as root (to create a user and switch to it)");
      return;
    }
    const user = `pt${crypto.randomUUID().slice(0, 8)}`;
    const add = await new Deno.Command("useradd", {
      args: ["--no-create-home", "--shell", "/bin/sh", user],
      stderr: "piped",
    })
      .output();
    if (!add.success) {
      console.log(`skipped: useradd failed: ${new TextDecoder().decode(add.stderr)}`);
      return;
    }
    try {
      await using tm = await startTestManager();
      await using work = await tempDir();
      await Deno.chmod(work.path, 0o711);
      const nodeDir = join(work.path, "n");
      // A work dir the user cannot reach is refused at start, not per instance.
      const hidden = join(work.path, "private");
      await Deno.mkdir(hidden, { mode: 0o700 });
      const unreachable = startNodeProcess(tm.manager.natsUrl, "hidden", join(hidden, "n"), [`--run-as=${user}`]);
      assert.equal((await unreachable.child.status).code, 1);
      await unreachable.kill();
      assert.match(unreachable.output(), new RegExp(`'${user}' as it cannot reach the work dir`));

      await using node = startNodeProcess(tm.manager.natsUrl, "asuser", nodeDir, [`--run-as=${user}`]);
      await waitUntil(() => /node:registered/.test(node.output()), 20_000, "the node");
      const key = join(nodeDir, "node.nkey");
      const res = await submitZip(
        tm,
        await makeZip({
          "task.toml": `[task]\nentrypoint = "run.sh"\n[env]\nNODE_KEY = "${key}"\n`,
          "run.sh": `#!/bin/sh
echo "user=$(id -un) home=$HOME"
cat "$NODE_KEY" >/dev/null 2>&1 && echo "key=readable" || echo "key=denied"
cat /proc/$PPID/environ >/dev/null 2>&1 && echo "parent-env=readable" || echo "parent-env=denied"
echo x > "$PARALLELIC_TASK_ROOT/written" && echo "own-dir=writable"
ls "${nodeDir}/packages" >/dev/null 2>&1 && echo "cache=listable" || echo "cache=denied"
`,
        }),
      );
      const id = (await res.json()).id;
      assert.equal((await tm.waitForTask(id)).state, "succeeded");
      const out = await (await tm.api(`/api/v1/tasks/${id}/instances/0/logs`)).text();
      assert.match(out, new RegExp(`user=${user} `));
      assert.match(out, /key=denied/);
      assert.match(out, /parent-env=denied/);
      assert.match(out, /own-dir=writable/);
      assert.match(out, /cache=denied/);
    } finally {
      await new Deno.Command("userdel", { args: [user], stderr: "null" }).output();
    }
  },
});

Deno.test({
  name: "parallelic login stores the token in a config file only its owner can read",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using home = await tempDir();
    const out = await runCli(
      { XDG_CONFIG_HOME: home.path, PARALLELIC_TOKEN: "", PARALLELIC_MANAGER: "" },
      ...["login", "--manager", tm.manager.url, "--token", TEST_TOKEN],
    );
    assert.equal(out.code, 0, out.stderr);
    const file = join(home.path, "parallelic", "config.toml");
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert.match(await Deno.readTextFile(file), new RegExp(TEST_TOKEN));
  },
});

Deno.test({
  name: "the admin CLI adds users (token printed once), rotates tokens, prints the join token and the audit log",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const cli = async (token: string, ...args: string[]) => {
      const out = await runCli({ PARALLELIC_MANAGER: tm.manager.url, PARALLELIC_TOKEN: token }, ...args);
      return { ...out, stdout: out.stdout.trim() };
    };
    const added = await cli(TEST_TOKEN, "users", "add", "dora", "--role", "viewer");
    assert.equal(added.code, 0, added.stderr);
    assert.match(added.stdout, /^[A-Za-z0-9_-]{43}$/, "stdout is the token alone");
    assert.equal((await cli(added.stdout, "nodes")).code, 0, "dora's token works");
    const denied = await cli(added.stdout, "users", "ls");
    assert.equal(denied.code, 1);
    assert.match(denied.stderr, /role 'viewer' may not: it needs 'admin'/);
    assert.match((await cli(TEST_TOKEN, "users", "ls")).stdout, /dora\s+viewer/);
    const rotated = await cli(TEST_TOKEN, "tokens", "rotate", "dora");
    assert.notEqual(rotated.stdout, added.stdout);
    assert.equal((await cli(added.stdout, "nodes")).code, 1, "the old token is dead");
    assert.equal((await cli(TEST_TOKEN, "nodes", "token")).stdout, tm.manager.joinToken);
    const audit = await cli(TEST_TOKEN, "audit", "--limit", "10");
    assert.match(audit.stdout, /token\.rotate\s+admin\s+127\.0\.0\.1\s+dora/);
    assert.match(audit.stdout, /join-token\.read\s+admin/);
    assert.equal((await cli(TEST_TOKEN, "users", "rm", "dora")).code, 0);
    assert.doesNotMatch((await cli(TEST_TOKEN, "users", "ls")).stdout, /dora/);
  },
});

Deno.test({
  name: "eight nodes joining at once all get their own NATS user (joins share configuration reloads)",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const names = Array.from({ length: 8 }, (_, i) => `burst-${i}`);
    const conns = await Promise.all(names.map((name) =>
      connectNode({
        natsUrl: tm.manager.natsUrl,
        name,
        workDir: join(work.path, name),
        joinToken: tm.manager.joinToken!,
        version: "test",
        log: testLogger(),
      })
    ));
    // Each can use its own subjects: a register on its own subject is answered.
    for (const [i, nc] of conns.entries()) {
      const reply = await nc.request(
        `parallelic.node.${names[i]}.register`,
        JSON.stringify({
          name: names[i],
          slots: 1,
          cpus: 1,
          memoryBytes: 0,
          gpus: 0,
          labels: {},
          version: "t",
          hostname: "h",
          holding: [],
        }),
        { timeout: 5000 },
      );
      assert.equal(reply.json<{ ok: boolean }>().ok, true);
    }
    const { entries } = await (await tm.api("/api/v1/audit?limit=100")).json() as { entries: AuditEntry[] };
    assert.deepEqual(entries.filter((e) => e.action === "node.join").map((e) => e.target).sort(), names);
    await Promise.all(conns.map((nc) => nc.close()));
  },
});

Deno.test({
  name: "a data set upload is capped by --max-data-size (and its tar overhead), not by --max-body-bytes",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ gateway: { maxBodyBytes: 64 * 1024 }, maxDataSetBytes: 1024 * 1024 });
    // Streamed without a length, as the CLI sends it: 512 KiB, over the body cap, under the data set limit.
    const stream = (bytes: number) =>
      new ReadableStream<Uint8Array>({
        start(c) {
          for (let i = 0; i < bytes / 65536; i++) c.enqueue(new Uint8Array(65536).fill(i));
          c.close();
        },
      });
    const ok = await tm.api("/api/v1/data/big?file=blob.bin", { method: "POST", body: stream(512 * 1024) });
    assert.equal(ok.status, 201, await ok.clone().text());
    assert.equal((await ok.json()).bytes, 512 * 1024);
    // Over the data set limit: refused by it, naming it.
    const over = await tm.api("/api/v1/data/big?file=blob.bin", { method: "POST", body: stream(2 * 1024 * 1024) });
    assert.equal(over.status, 413);
    assert.equal((await over.json()).error.code, "data_set_too_large");
    // Everything else keeps the body cap.
    const pkg = await tm.api("/api/v1/tasks", { method: "POST", body: stream(512 * 1024) });
    assert.equal(pkg.status, 413);
    assert.equal((await pkg.json()).error.code, "body_too_large");
  },
});
