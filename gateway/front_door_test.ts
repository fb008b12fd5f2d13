import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { startFrontDoor } from "./front_door.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads from `conn` until what came holds `end`. */
async function readUntil(conn: Deno.Conn, end: string): Promise<void> {
  const buf = new Uint8Array(4096);
  let text = "";
  while (!text.includes(end)) {
    const n = await conn.read(buf);
    if (n === null) throw new Error(`the connection closed before '${end}': got '${text}'`);
    text += decoder.decode(buf.subarray(0, n));
  }
}

Deno.test({
  name: "the front door sends an event stream's next event at once, not held for the client's ACK (no Nagle)",
  ...opts,
  async fn() {
    await using dir = await tempDir();
    const upstreamPath = join(dir.path, "gateway.sock");
    const laterMs = 10;
    // As the event stream answers `parallelic submit --wait`: `ready` at once, the task's end a little later.
    const server = Deno.serve({ path: upstreamPath, onListen() {} }, (req) => {
      if (new URL(req.url).pathname === "/ping") return new Response("pong");
      const body = new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(encoder.encode("event: ready\ndata: {}\n\n"));
          await new Promise((r) => setTimeout(r, laterMs));
          controller.enqueue(encoder.encode("event: task\ndata: {}\n\n"));
          controller.close();
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    });
    const door = startFrontDoor({ hostname: "127.0.0.1", port: 0, upstreamPath });
    try {
      const delays: number[] = [];
      for (let round = 0; round < 5; round++) {
        const conn = await Deno.connect({ hostname: "127.0.0.1", port: door.addr.port });
        // Requests and answers first on the same connection, as the CLI's come before it follows a task.
        for (let i = 0; i < 3; i++) {
          await conn.write(encoder.encode("GET /ping HTTP/1.1\r\nhost: x\r\n\r\n"));
          await readUntil(conn, "pong");
        }
        await conn.write(encoder.encode("GET /events HTTP/1.1\r\nhost: x\r\n\r\n"));
        await readUntil(conn, "data: {}\n\n");
        const readyAt = performance.now();
        await readUntil(conn, "event: task\ndata: {}\n\n");
        delays.push(performance.now() - readyAt);
        conn.close();
      }
      delays.sort((a, b) => a - b);
      // Held by Nagle, the second event waits for the ACK of the first, which the client's kernel delays (40 ms).
      assert.ok(delays[2] < laterMs + 20, `the end came a median ${delays[2].toFixed(1)} ms after ready`);
    } finally {
      await door.close();
      await server.shutdown();
    }
  },
});
