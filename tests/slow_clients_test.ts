/**
 * Slow and greedy clients against the gateway's front door, over raw TCP on
 * 127.0.0.1: a connection that sends nothing, a request head sent a line at
 * a time, a body that stops coming, and more connections than one client
 * may hold. The quiet answer of an event stream is left alone, and a
 * client cannot claim another address.
 */
import assert from "node:assert/strict";
import { makeZip, startTestManager, type TestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const encoder = new TextEncoder();

async function connect(tm: TestManager): Promise<Deno.TcpConn> {
  const { port } = new URL(tm.manager.url);
  return await Deno.connect({ hostname: "127.0.0.1", port: Number(port) });
}

/** Everything the server sends until it closes the connection. */
async function readToEnd(conn: Deno.Conn): Promise<string> {
  const buf = new Uint8Array(4096);
  let text = "";
  for (;;) {
    const n = await conn.read(buf).catch(() => null);
    if (n === null) break;
    text += new TextDecoder().decode(buf.subarray(0, n));
  }
  conn.close();
  return text;
}

Deno.test({
  name: "a connection that sends no head, or its head a line at a time, gets a 408 and is closed",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ frontDoor: { headerTimeoutMs: 400 } });
    const silent = await connect(tm);
    const answer = await readToEnd(silent);
    assert.match(answer, /^HTTP\/1.1 408 Request Timeout/);
    assert.match(answer, /"code":"header_timeout"/);

    const dribbling = await connect(tm);
    let stop = false;
    const writer = (async () => {
      await dribbling.write(encoder.encode("GET /healthz HTTP/1.1\r\nHost: x\r\n"));
      for (let i = 0; !stop; i++) {
        await new Promise((r) => setTimeout(r, 50));
        await dribbling.write(encoder.encode(`X-Slow-${i}: a\r\n`)).catch(() => (stop = true));
      }
    })();
    const slow = await readToEnd(dribbling);
    stop = true;
    await writer;
    assert.match(slow, /^HTTP\/1.1 408/, "headers sent on time, a line at a time, still count against one deadline");

    // On a kept-alive connection, the next head has the same time from its first byte.
    const kept = await connect(tm);
    await kept.write(encoder.encode("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\n"));
    const keptAnswer = await readToEnd(kept);
    assert.equal(
      keptAnswer.match(/HTTP\/1.1 200/g)?.length,
      1,
      "the first request was answered, then the slow one cut off",
    );
    // The server still serves.
    assert.equal((await tm.api("/healthz", { token: null })).status, 200);
  },
});

Deno.test({
  name: "a request whose body stops coming is closed; a quiet event stream is not",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ frontDoor: { idleTimeoutMs: 400 } });
    const conn = await connect(tm);
    await conn.write(encoder.encode(
      `POST /api/v1/tasks HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${tm.token}\r\n` +
        `Content-Type: application/zip\r\nContent-Length: 100000\r\n\r\n`,
    ));
    await conn.write(new Uint8Array(1000));
    const answer = await readToEnd(conn);
    assert.doesNotMatch(answer, /HTTP\/1.1 201/, "the upload was cut off, no task made");
    assert.deepEqual((await (await tm.api("/api/v1/tasks")).json()).tasks, []);

    // An event stream says nothing for longer than the idle timeout, and then carries an event.
    const res = await tm.api("/api/v1/events");
    const reader = res.body!.getReader();
    let text = "";
    while (!text.includes("event: ready")) text += new TextDecoder().decode((await reader.read()).value);
    await new Promise((r) => setTimeout(r, 1000));
    const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\n" });
    const submitted = await tm.api("/api/v1/tasks?name=quiet", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: zip as Uint8Array<ArrayBuffer>,
    });
    assert.equal(submitted.status, 201);
    const { id } = await submitted.json();
    while (!text.includes(id)) {
      const next = await reader.read();
      assert.ok(!next.done, "the quiet stream was kept open");
      text += new TextDecoder().decode(next.value);
    }
    await reader.cancel();
  },
});

Deno.test({
  name: "one client holds at most --max-connections-per-client connections; the next is refused with a 429",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ frontDoor: { maxConnectionsPerClient: 4, headerTimeoutMs: 30_000 } });
    const held = await Promise.all([1, 2, 3, 4].map(() => connect(tm)));
    // Connections are accepted in order: the fifth is counted after the four.
    const extra = await connect(tm);
    const refused = await readToEnd(extra);
    assert.match(refused, /^HTTP\/1.1 429 Too Many Requests/);
    assert.match(refused, /"code":"too_many_connections".*at most 4 at once/);
    held.pop()!.close();
    // Once one closes, the client is served again (the front door notices the close shortly).
    let status = 429;
    for (let i = 0; i < 100 && status === 429; i++) {
      status = (await tm.api("/healthz", { token: null }).then(async (r) => (await r.body?.cancel(), r))).status;
      if (status === 429) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(status, 200);
    for (const c of held) c.close();
  },
});

Deno.test({
  name: "a client cannot claim another address: the front door replaces x-parallelic-peer",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const conn = await connect(tm);
    // Two requests on one kept-alive connection, each claiming another address; the second also asks to close.
    const forged = (close: string) =>
      `GET /api/v1/whoami HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong\r\nX-Parallelic-Peer: 203.0.113.9\r\n${close}\r\n`;
    await conn.write(encoder.encode(forged("")));
    await conn.write(encoder.encode(forged("Connection: close\r\n")));
    const answers = await readToEnd(conn);
    assert.equal(answers.match(/HTTP\/1.1 401/g)?.length, 2, answers);
    const { entries } = await (await tm.api("/api/v1/audit?limit=10")).json();
    const failed = entries.filter((e: { action: string }) => e.action === "auth.failed");
    assert.deepEqual(failed.map((e: { address: string }) => e.address), ["127.0.0.1", "127.0.0.1"]);
  },
});
