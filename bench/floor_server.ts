/**
 * The HTTP part of the user-path latency floor (`bench/user_latency.ts`): a
 * trivial Hono handler on the same Deno as the gateway, in a process of its
 * own as the manager is. `POST /floor` reads the body to its end and answers
 * a small JSON object with 201, as a submit does; nothing else.
 *
 *   deno run -A bench/floor_server.ts   (prints `floor: http://127.0.0.1:PORT`)
 *
 * @module
 */
import { Hono } from "hono";

const app = new Hono();
app.post("/floor", async (c) => {
  await c.req.arrayBuffer();
  return c.json({ id: "floor", state: "queued", instances: 1 }, 201);
});

Deno.serve({
  hostname: "127.0.0.1",
  port: 0,
  onListen: ({ port }) => console.log(`floor: http://127.0.0.1:${port}`),
}, app.fetch);
