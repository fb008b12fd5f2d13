import assert from "node:assert/strict";
import http from "node:http";
import { createHash } from "node:crypto";
import { serveHttps, tempDir } from "../tests/kit/mod.ts";
import { streamUpload } from "./upload.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function body(size: number): { stream: ReadableStream<Uint8Array>; sha: string } {
  const data = new Uint8Array(size).map((_, i) => (i * 7) % 256);
  const pieces: Uint8Array[] = [];
  for (let at = 0; at < size; at += 40_000) pieces.push(data.subarray(at, at + 40_000));
  return { stream: ReadableStream.from(pieces), sha: createHash("sha256").update(data).digest("hex") };
}

Deno.test({
  name: "streamUpload() sends a body to Deno.serve in HTTP/1.1 chunks, trying no HTTP/2 first, and gets its answer",
  ...opts,
  async fn() {
    let framing = "";
    const server = Deno.serve({ port: 0, onListen() {} }, async (req) => {
      const hash = createHash("sha256");
      for await (const chunk of req.body!) hash.update(chunk);
      // Deno.serve takes HTTP/2 too (as the front door does not), where no chunks are announced.
      framing = req.headers.get("transfer-encoding") ?? "HTTP/2 frames";
      return Response.json({ sha: hash.digest("hex"), auth: req.headers.get("authorization") });
    });
    try {
      const { stream, sha } = body(3_000_000);
      const res = await streamUpload({
        url: new URL(`http://127.0.0.1:${server.addr.port}/up?x=1`),
        method: "POST",
        headers: { Authorization: "Bearer t" },
        body: stream,
      });
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { sha, auth: "Bearer t" });
      assert.equal(framing, "chunked");
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "streamUpload() trusts the CA it is given for an HTTPS manager with a private CA, and no other",
  ...opts,
  async fn() {
    await using dir = await tempDir();
    const { server, url: origin, ca } = await serveHttps(dir.path, async (req) => {
      const hash = createHash("sha256");
      for await (const chunk of req.body!) hash.update(chunk);
      return new Response(hash.digest("hex"));
    });
    try {
      const url = new URL(`${origin}/up`);
      const { stream, sha } = body(2_000_000);
      const res = await streamUpload({
        url,
        method: "POST",
        headers: {},
        body: stream,
        caCerts: [await Deno.readTextFile(ca)],
      });
      assert.equal(await res.text(), sha);
      await assert.rejects(
        streamUpload({ url, method: "POST", headers: {}, body: body(1000).stream }),
        /certificate/i,
        "a certificate of an unknown CA is refused",
      );
    } finally {
      await server.shutdown();
    }
  },
});

Deno.test({
  name: "streamUpload() sends HTTP/1.1 chunks to a Node server, and resolves with an early answer such as a 413",
  ...opts,
  async fn() {
    let received = 0;
    let framing = "";
    const server = http.createServer((req, res) => {
      if (req.url === "/small") {
        req.once("data", () => {
          res.writeHead(413, { "content-type": "application/json" });
          res.end(JSON.stringify({ error: "too large" }));
          req.destroy();
        });
        return;
      }
      framing = String(req.headers["transfer-encoding"]);
      const hash = createHash("sha256");
      req.on("data", (c: Uint8Array) => (received += c.byteLength, hash.update(c)));
      req.on("end", () => res.end(hash.digest("hex")));
    });
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
    const port = (server.address() as { port: number }).port;
    try {
      const { stream, sha } = body(2_500_000);
      const res = await streamUpload({
        url: new URL(`http://127.0.0.1:${port}/ok`),
        method: "POST",
        headers: {},
        body: stream,
      });
      assert.equal(await res.text(), sha);
      assert.equal(received, 2_500_000);
      assert.equal(framing, "chunked", "HTTP/1.1 chunks");
      const early = await streamUpload({
        url: new URL(`http://127.0.0.1:${port}/small`),
        method: "POST",
        headers: {},
        body: body(50_000_000).stream,
      });
      assert.equal(early.status, 413);
      assert.deepEqual(await early.json(), { error: "too large" });
    } finally {
      server.close();
    }
  },
});
