import assert from "node:assert/strict";
import { Client } from "./client.ts";
import { followTask, readEvents, type StreamEvent } from "./follow.ts";

const counts = (succeeded: number) => ({ queued: 0, running: 1 - succeeded, succeeded, failed: 0, cancelled: 0 });

/**
 * A real HTTP server with one task: `GET /api/v1/tasks/t1` answers it running
 * until the event stream (when `stream`) has sent its end, then succeeded.
 */
function taskServer(stream: boolean) {
  let ended = false;
  let reads = 0;
  let sendEnd = () => {};
  const encoder = new TextEncoder();
  const server = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, (req) => {
    const path = new URL(req.url).pathname;
    if (path === "/api/v1/tasks/t1") {
      reads++;
      // Without a stream the task ends at the third read.
      if (!stream && reads === 3) ended = true;
      const task = { id: "t1", state: ended ? "succeeded" : "running", instances: 1, counts: counts(ended ? 1 : 0) };
      // The end happens right after the first read, before the client can wait for it.
      if (stream && reads === 1) setTimeout(() => sendEnd(), 0);
      return Response.json(task);
    }
    if (path === "/api/v1/events" && stream) {
      const body = new ReadableStream<Uint8Array>({
        start(controller) {
          controller.enqueue(encoder.encode(`event: ready\ndata: {"user":"u"}\n\n`));
          sendEnd = () => {
            ended = true;
            const event = { taskId: "t1", state: "succeeded", instances: 1, counts: counts(1) };
            controller.enqueue(encoder.encode(`event: task\ndata: ${JSON.stringify(event)}\n\n`));
          };
        },
      });
      return new Response(body, { headers: { "content-type": "text/event-stream" } });
    }
    return Response.json({ error: { code: "not_found", message: "no such route" } }, { status: 404 });
  });
  return { url: `http://127.0.0.1:${server.addr.port}`, server, reads: () => reads };
}

Deno.test("followTask() reads the task again as soon as the event stream says it ended", async () => {
  const { url, server, reads } = taskServer(true);
  try {
    const seen: string[] = [];
    // A deadline well before the next safety read: only the event can make the task be read ended in time.
    const task = await followTask(
      new Client({ manager: url, token: "t" }),
      "t1",
      (t) => seen.push(t.state),
      Date.now() + 1500,
    );
    assert.equal(task.state, "succeeded");
    assert.equal(reads(), 2);
    // Shown: the first read (running), the event and the read it prompted (succeeded), in whichever order they came.
    assert.ok(seen.includes("running"), seen.join());
    assert.equal(seen.filter((x) => x === "succeeded").length >= 2, true, seen.join());
  } finally {
    await server.shutdown();
  }
});

Deno.test("followTask() reads the task every so often when the manager has no event stream", async () => {
  const { url, server, reads } = taskServer(false);
  try {
    const task = await followTask(new Client({ manager: url, token: "t" }), "t1", () => {});
    assert.equal(task.state, "succeeded");
    assert.equal(reads(), 3);
  } finally {
    await server.shutdown();
  }
});

Deno.test("readEvents() splits a stream into events, whatever its chunks", async () => {
  const text = 'event: ready\ndata: {}\n\n: ping\n\nevent: task\ndata: {"a":1}\n\n';
  const bytes = new TextEncoder().encode(text);
  const body = new ReadableStream<Uint8Array>({
    start(c) {
      // One byte at a time: an event split anywhere is still one event.
      for (const b of bytes) c.enqueue(new Uint8Array([b]));
      c.close();
    },
  });
  const events: StreamEvent[] = [];
  await readEvents(body, (e) => events.push(e));
  assert.deepEqual(events, [{ kind: "ready", data: "{}" }, { kind: "task", data: '{"a":1}' }]);
});
