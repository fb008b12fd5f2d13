import assert from "node:assert/strict";
import { RateLimitError, UnavailableError, ValidationError } from "../core/errors.ts";
import { serveHttps, tempDir } from "../tests/kit/mod.ts";
import { Client, resolveSettings, saveSettings, SMALL_UPLOAD_BYTES } from "./client.ts";
import { submitPackage } from "./commands.ts";

/** A real HTTP server that answers 503 `failures` times per path, then 200; it notes every request's headers. */
function flakyServer(failures: number) {
  const calls = new Map<string, number>();
  const keys: Array<string | null> = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    const key = `${req.method} ${new URL(req.url).pathname}`;
    const n = (calls.get(key) ?? 0) + 1;
    calls.set(key, n);
    keys.push(req.headers.get("idempotency-key"));
    await req.body?.cancel();
    if (n <= failures) {
      return Response.json({ error: { code: "unavailable", message: "NATS did not answer: timeout; try again" } }, {
        status: 503,
      });
    }
    return Response.json({ ok: true, n });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, calls, keys, server };
}

Deno.test("Client.fetch() tries a read again while the manager answers 503, never a write", async () => {
  const { url, calls, server } = flakyServer(2);
  try {
    const client = new Client({ manager: url, token: "t", retryMs: 10_000 });
    const res = await client.fetch("/api/v1/tasks/x/logs");
    assert.deepEqual(await res.json(), { ok: true, n: 3 });
    // A submit or a cancel may have been taken before its answer was lost: sent once, the error passed on.
    await assert.rejects(client.fetch("/api/v1/tasks", { method: "POST", body: "zip" }), UnavailableError);
    assert.equal(calls.get("POST /api/v1/tasks"), 1);
    // A read gives up after retryMs, with the manager's own words.
    const impatient = new Client({ manager: url, token: "t", retryMs: 100 });
    await assert.rejects(impatient.fetch("/api/v1/nodes"), /NATS did not answer: timeout; try again/);
    assert.equal(calls.get("GET /api/v1/nodes"), 1);
  } finally {
    await server.shutdown();
  }
});

Deno.test("submitPackage() sends a submit again with the same Idempotency-Key while the manager answers 503", async () => {
  const { url, calls, keys, server } = flakyServer(2);
  try {
    const client = new Client({ manager: url, token: "t", retryMs: 10_000 });
    const created = await submitPackage(client, "demo", new Uint8Array([1, 2, 3]));
    assert.deepEqual(created, { ok: true, n: 3 });
    assert.equal(calls.get("POST /api/v1/tasks"), 3);
    assert.equal(keys.length, 3);
    assert.match(keys[0] ?? "", /^[0-9a-f-]{36}$/);
    assert.deepEqual(new Set(keys).size, 1, "the same key every time");
    // The next submit is another task: another key.
    await submitPackage(client, "demo", new Uint8Array([1]));
    assert.notEqual(keys.at(-1), keys[0]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("a 429 is a RateLimitError with its Retry-After, and a submit is not sent again for it", async () => {
  const calls: string[] = [];
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, async (req) => {
    calls.push(req.method);
    await req.body?.cancel();
    return Response.json({
      error: { code: "rate_limited", message: "Too many requests for user 'a': try again in 3 s" },
    }, {
      status: 429,
      headers: { "retry-after": "3" },
    });
  });
  try {
    const client = new Client({ manager: `http://127.0.0.1:${server.addr.port}`, token: "t", retryMs: 10_000 });
    await assert.rejects(
      submitPackage(client, "demo", new Uint8Array([1])),
      (e) => e instanceof RateLimitError && e.retryAfterMs === 3000 && /try again in 3 s/.test(e.message),
    );
    await assert.rejects(client.fetch("/api/v1/tasks"), RateLimitError);
    assert.deepEqual(calls, ["POST", "GET"]);
  } finally {
    await server.shutdown();
  }
});

Deno.test("saveSettings() keeps the CA file as resolveSettings() reads it back (ca_file)", async () => {
  await using home = await tempDir();
  const before = Deno.env.get("XDG_CONFIG_HOME");
  Deno.env.set("XDG_CONFIG_HOME", home.path);
  try {
    await saveSettings({ manager: "https://m:8080", token: "tok", caFile: "/etc/ca.pem" });
    const text = await Deno.readTextFile(`${home.path}/parallelic/config.toml`);
    assert.match(text, /^ca_file = "\/etc\/ca.pem"$/m);
    assert.doesNotMatch(text, /caFile/);
    const settings = await resolveSettings({});
    assert.equal(settings.caFile, Deno.env.get("PARALLELIC_CA_FILE") ?? "/etc/ca.pem");
  } finally {
    if (before === undefined) Deno.env.delete("XDG_CONFIG_HOME");
    else Deno.env.set("XDG_CONFIG_HOME", before);
  }
});

Deno.test("a 4xx the client has no class for is the request's error, not sent again", async () => {
  let calls = 0;
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, () => {
    calls++;
    return Response.json({ error: { code: "method_not_allowed", message: "No such method" } }, { status: 405 });
  });
  try {
    const client = new Client({ manager: `http://127.0.0.1:${server.addr.port}`, token: "t", retryMs: 10_000 });
    await assert.rejects(submitPackage(client, "demo", new Uint8Array([1])), ValidationError);
    await assert.rejects(client.fetch("/api/v1/tasks"), ValidationError);
    assert.equal(calls, 2);
  } finally {
    await server.shutdown();
  }
});

Deno.test({
  name: "Client.upload() trusts --ca-file for a large, streamed body as for a small one",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const { server, url, ca } = await serveHttps(
      dir.path,
      async (req) => Response.json({ bytes: (await req.bytes()).byteLength }),
    );
    try {
      const client = new Client({ manager: url, token: "t", caFile: ca });
      for (const size of [1000, SMALL_UPLOAD_BYTES + 1]) {
        const res = await client.upload("/up", { body: new Blob([new Uint8Array(size)]).stream(), sizeBytes: size });
        assert.deepEqual(await res.json(), { bytes: size });
      }
    } finally {
      await server.shutdown();
    }
  },
});
