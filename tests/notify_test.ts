/**
 * Task notifications end to end: a real manager and node, a real HTTP
 * receiver (Deno.serve in the test). The body and its signature, a retry
 * after a 500, giving up, a delivery owed across a manager restart, and the
 * refusal of internal addresses unless the operator allows them.
 */
import assert from "node:assert/strict";
import { freePort } from "../core/nats_server.ts";
import { DELIVERY_HEADER, type NotifyPayload, verifyNotification } from "../core/notify.ts";
import type { TaskView } from "../core/schema.ts";
import { addApiUser, makeZip, runCli, startTestManager, submitZip, type TestManager, waitUntil } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** A webhook receiver: answers each request with the next of `answers` (the last one from then on). */
function receiver(answers: number[], port = 0) {
  const got: Array<{ headers: Headers; body: string }> = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port, onListen() {} }, async (req) => {
    got.push({ headers: req.headers, body: await req.text() });
    return new Response("ok", { status: answers[Math.min(got.length - 1, answers.length - 1)] });
  });
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook?key=abc`,
    got,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A task of 3 instances, instance 1 failing, telling `url` when it ends `on`. */
const hookedTask = (url: string, on = "") =>
  makeZip({
    "task.toml": `[task]\nname = "hooked"\ncommand = 'test "$PARALLELIC_INSTANCE" != 1'\ninstances = 3\n` +
      `[notify]\nurl = "${url}"\n${on}`,
  });

async function submit(tm: TestManager, zip: Uint8Array): Promise<string> {
  const res = await submitZip(tm, zip, "hooked");
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).id;
}

const viewOf = async (tm: TestManager, id: string) => await (await tm.api(`/api/v1/tasks/${id}`)).json() as TaskView;

const notifyOptions = (extra: object = {}) => ({
  localNode: true,
  slots: 2,
  publicUrl: "https://parallelic.example/",
  notify: { allow: ["127.0.0.1"], firstRetryMs: 300, ...extra },
});

Deno.test({
  name: "notify: a failed task's summary is POSTed signed; a 500 is tried again, the same body, then delivered",
  ...opts,
  async fn() {
    await using hook = receiver([500, 200]);
    await using tm = await startTestManager(notifyOptions());
    const id = await submit(tm, await hookedTask(hook.url));
    assert.equal((await tm.waitForTask(id)).state, "failed");
    await waitUntil(async () => (await viewOf(tm, id)).notify?.phase === "delivered", 15_000, "delivered");

    assert.equal(hook.got.length, 2, "one 500, then one 200");
    const settings = await (await tm.api("/api/v1/notify")).json();
    const kept = `${tm.dataDir}/notify-secret`;
    assert.equal((await Deno.readTextFile(kept)).trim(), settings.secret, "made in the data dir");
    assert.equal((await Deno.stat(kept)).mode! & 0o777, 0o600, "for the manager's user alone");
    for (const { headers, body } of hook.got) {
      assert.ok(await verifyNotification(settings.secret, headers, body), "the signature verifies");
      assert.equal(headers.get("content-type"), "application/json");
    }
    const [first, second] = hook.got;
    assert.equal(first.body, second.body, "a retry sends the same bytes");
    assert.equal(first.headers.get(DELIVERY_HEADER), second.headers.get(DELIVERY_HEADER));
    assert.equal(await verifyNotification("another-secret-0123456789", first.headers, first.body), false);
    const tampered = first.body.replace('"failed"', '"succeeded"');
    assert.equal(await verifyNotification(settings.secret, first.headers, tampered), false, "a changed body fails");
    assert.equal(
      await verifyNotification(settings.secret, first.headers, first.body, { nowMs: Date.now() + 600_000 }),
      false,
      "an old timestamp fails (a replay)",
    );

    const payload = JSON.parse(first.body) as NotifyPayload;
    assert.equal(payload.event, "task.ended");
    assert.equal(payload.task.id, id);
    assert.equal(payload.task.name, "hooked");
    assert.equal(payload.task.owner, "admin");
    assert.equal(payload.task.state, "failed");
    assert.deepEqual(payload.task.counts, { queued: 0, running: 0, succeeded: 2, failed: 1, cancelled: 0 });
    assert.equal(payload.task.link, `https://parallelic.example/tasks/${id}`);
    assert.ok(payload.task.startedAt! <= payload.task.endedAt);
    assert.deepEqual(payload.failedInstances, [1]);
    assert.equal(payload.failedInstancesMore, 0);

    const view = (await viewOf(tm, id)).notify!;
    assert.equal(view.url, hook.url);
    assert.deepEqual(view.on, ["failed", "succeeded"], "the default");
    assert.deepEqual(view.deliveries.map((d) => [d.attempt, d.status, d.httpStatus]), [
      [1, "failed", 500],
      [2, "delivered", 200],
    ]);

    const status = await runCli(tm, "status", id);
    assert.equal(status.code, 0, status.stderr);
    assert.match(
      status.stdout,
      /Notify\s+http:\/\/127\.0\.0\.1:\d+\/hook\?key=abc: delivered 200 at \S+ UTC \(try 2\)/,
    );

    // The URL may hold the receiver's token, the secret signs for the manager: neither is a viewer's to read.
    const viewer = await addApiUser(tm, "vic", "viewer");
    const seen = await (await tm.api(`/api/v1/tasks/${id}`, { token: viewer })).json() as TaskView;
    const origin = `${new URL(hook.url).origin}/…`;
    assert.equal(seen.spec.notify?.url, origin);
    assert.equal(seen.notify?.url, origin);
    assert.equal(seen.notify?.phase, "delivered", "how it went is theirs to see");
    assert.equal((await tm.api("/api/v1/notify", { token: viewer })).status, 403);
  },
});

Deno.test({
  name:
    "notify: a receiver that keeps failing is given up after the tries; a 404 at once; a state not in `on` not sent",
  ...opts,
  async fn() {
    await using failing = receiver([503]);
    await using missing = receiver([404]);
    // A receiver that never answers: each try ends at the timeout, and tasks go on meanwhile.
    let hung = 0;
    const release = Promise.withResolvers<void>();
    const silent = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async () => {
      hung++;
      await release.promise;
      return new Response(null, { status: 200 });
    });
    await using tm = await startTestManager(notifyOptions({ tries: 3, firstRetryMs: 100, timeoutMs: 500 }));
    const h = await submit(tm, await hookedTask(`http://127.0.0.1:${silent.addr.port}/`));
    await tm.waitForTask(h);
    const a = await submit(tm, await hookedTask(failing.url));
    const b = await submit(tm, await hookedTask(missing.url));
    const c = await submit(tm, await hookedTask(missing.url, 'on = ["succeeded"]\n'));
    for (const id of [a, b, c]) await tm.waitForTask(id, 10_000);
    const gaveUp = async (id: string) => (await viewOf(tm, id)).notify?.phase === "gave_up";
    await waitUntil(async () => await gaveUp(a) && await gaveUp(b) && await gaveUp(h), 15_000, "all given up");
    const timedOut = (await viewOf(tm, h)).notify!.deliveries;
    assert.deepEqual(timedOut.map((d) => d.error), Array(3).fill("no answer within 0.5 s"));
    assert.equal(hung, 3);
    release.resolve();
    await silent.shutdown();
    assert.equal(failing.got.length, 3, "503 is tried again, up to 3 tries");
    assert.deepEqual((await viewOf(tm, a)).notify!.deliveries.map((d) => d.status), ["failed", "failed", "gave_up"]);
    const b404 = (await viewOf(tm, b)).notify!.deliveries;
    assert.deepEqual(b404.map((d) => [d.status, d.httpStatus]), [["gave_up", 404]], "a 404 is not tried again");
    const skipped = (await viewOf(tm, c)).notify!;
    assert.equal(skipped.phase, "skipped");
    assert.deepEqual(skipped.deliveries, []);
    assert.equal(missing.got.length, 1, "only task b's one try reached it");
  },
});

Deno.test({
  name: "notify: a notification owed when the manager stops is delivered by the next start",
  ...opts,
  async fn() {
    const port = freePort();
    const url = `http://127.0.0.1:${port}/hook`;
    const dataDir = await Deno.makeTempDir({ prefix: "parallelic-notify-" });
    let id: string;
    {
      // Nothing listens yet: the first try is refused, the next one is due in 1.5 s.
      await using tm = await startTestManager({ ...notifyOptions({ firstRetryMs: 1500 }), dataDir });
      id = await submit(tm, await hookedTask(url));
      await tm.waitForTask(id);
      await waitUntil(async () => (await viewOf(tm, id)).notify?.phase === "retrying", 15_000, "first try failed");
    }
    await using hook = receiver([200], port);
    await using tm = await startTestManager({ ...notifyOptions({ firstRetryMs: 1500 }), dataDir });
    await waitUntil(async () => (await viewOf(tm, id)).notify?.phase === "delivered", 15_000, "delivered");
    assert.equal(hook.got.length, 1);
    assert.equal(JSON.parse(hook.got[0].body).task.id, id);
    const deliveries = (await viewOf(tm, id)).notify!.deliveries;
    assert.deepEqual(deliveries.map((d) => [d.attempt, d.status]), [[1, "failed"], [2, "delivered"]]);
    assert.match(deliveries[0].error ?? "", /refused|connect/i);
    await Deno.remove(dataDir, { recursive: true });
  },
});

Deno.test({
  name: "notify: a webhook on an internal address is refused unless --notify-allow names it (no request is made)",
  ...opts,
  async fn() {
    await using hook = receiver([200]);
    await using tm = await startTestManager({ localNode: true, slots: 2, notify: { firstRetryMs: 100 } });
    const loopback = await submit(tm, await hookedTask(hook.url));
    const named = await submit(tm, await hookedTask(hook.url.replace("127.0.0.1", "localhost")));
    const mapped = await submit(tm, await hookedTask(hook.url.replace("127.0.0.1", "[::ffff:127.0.0.1]")));
    for (const id of [loopback, named, mapped]) {
      await tm.waitForTask(id);
      const view = await waitUntil(
        async () => {
          const n = (await viewOf(tm, id)).notify;
          return n?.phase === "gave_up" ? n : null;
        },
        15_000,
        "refused",
      );
      assert.equal(view.deliveries.length, 1, "refused at once, not tried again");
      assert.match(view.deliveries[0].error ?? "", /internal address: the operator may allow it with --notify-allow/);
    }
    assert.equal(hook.got.length, 0, "the receiver never heard from the manager");
  },
});

Deno.test({
  name: "notify: [notify] is checked like the rest of task.toml, and --set notify.url works",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const bad = async (toml: string) => {
      const res = await submitZip(tm, await makeZip({ "task.toml": `[task]\ncommand = "true"\n${toml}` }));
      assert.equal(res.status, 400);
      return (await res.json()).error.message as string;
    };
    assert.match(await bad('[notify]\nurl = "https://h.example"\nretries = 3\n'), /unknown key 'notify.retries'/);
    assert.match(await bad('[notify]\nurl = "file:///etc/passwd"\n'), /http:\/\/ or https:\/\//);
    assert.match(await bad(`[notify]\nurl = "https://h.example/${"x".repeat(2100)}"\n`), /at most 2048 characters/);
    assert.match(await bad('[notify]\nurl = "https://h.example"\non = ["ended"]\n'), /notify\.on/);
    const form = new FormData();
    form.append("overrides", 'notify.url = "https://hooks.example/x"\nnotify.on = ["cancelled"]\n');
    form.append(
      "package",
      new Blob([await makeZip({ "task.toml": '[task]\ncommand = "true"\n' }) as Uint8Array<ArrayBuffer>]),
      "t.zip",
    );
    const res = await tm.api("/api/v1/tasks", { method: "POST", body: form });
    assert.equal(res.status, 201, await res.clone().text());
    const view = await viewOf(tm, (await res.json()).id);
    assert.deepEqual(view.spec.notify, { url: "https://hooks.example/x", on: ["cancelled"] });
  },
});
