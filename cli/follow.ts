/**
 * Following a task until it ends, as `parallelic submit --wait` and
 * `parallelic wait` do: on the live event stream (`GET /api/v1/events?task=ID`),
 * which tells the moment the task ends, with a read of the task now and then
 * in case an event was lost on the way (the stream is best effort, like the
 * NATS events behind it), and a read every 300 ms when the stream cannot be
 * had (a proxy that buffers it, a manager without it).
 *
 * @module
 */
import type { TaskView } from "../core/schema.ts";
import type { Client } from "./client.ts";
import { takeEvents } from "../core/sse.js";

/** One Server-Sent Event: its `event:` kind and its `data:`. */
export interface StreamEvent {
  kind: string;
  data: string;
}

/** Calls `onEvent` with each event of an SSE body, in order, until the body ends. */
export async function readEvents(
  body: ReadableStream<Uint8Array>,
  onEvent: (event: StreamEvent) => void,
): Promise<void> {
  let buffer = "";
  for await (const text of body.pipeThrough(new TextDecoderStream())) {
    const { events, rest } = takeEvents(buffer + text);
    buffer = rest;
    for (const event of events) onEvent(event);
  }
}

/** How often the task is read while the stream is open, in case its last event was lost. */
const SAFETY_READ_MS = 2000;
/** How often the task is read without a stream. */
const POLL_MS = 300;

const FINAL = new Set(["succeeded", "failed", "cancelled"]);

/** What a task event says of its task (the part shown while waiting). */
export type TaskProgressLine = Pick<TaskView, "state" | "counts" | "instances">;

/**
 * Follows task `id` until it ends or the clock passes `untilMs` (then it
 * may still run), calling `progress` with each change; returns the task as
 * read last.
 */
export async function followTask(
  client: Client,
  id: string,
  progress: (task: TaskProgressLine) => void,
  untilMs = Infinity,
): Promise<TaskView> {
  const stop = new AbortController();
  // Set by the stream when there is news (it opened, the task ended, it broke); the loop reads the task then.
  let news = false;
  let onNews = () => {};
  const wake = () => {
    news = true;
    onNews();
  };
  const until = (ms: number) =>
    new Promise<void>((resolve) => {
      if (news) return resolve();
      // Not setTimeout: Deno's loads its Node timers at first use, a fifth of the CLI's start. A timeout signal
      // keeps the process alive only while it has a listener.
      const timer = AbortSignal.timeout(ms);
      const done = () => {
        timer.removeEventListener("abort", done);
        resolve();
      };
      timer.addEventListener("abort", done);
      onNews = done;
    }).finally(() => {
      news = false;
      onNews = () => {};
    });
  let streaming = false;
  const stream = (async () => {
    const res = await client.fetch(`/api/v1/events?task=${encodeURIComponent(id)}&topics=tasks`, {
      headers: { accept: "text/event-stream" },
      signal: stop.signal,
    });
    if (!res.body || !res.headers.get("content-type")?.startsWith("text/event-stream")) {
      await res.body?.cancel();
      return;
    }
    await readEvents(res.body, ({ kind, data }) => {
      if (kind === "ready") {
        streaming = true;
        return wake();
      }
      if (kind !== "task") return;
      const event = JSON.parse(data) as TaskProgressLine;
      progress(event);
      if (FINAL.has(event.state)) wake();
    });
  })().catch(() => {}).finally(() => {
    streaming = false;
    wake();
  });
  try {
    // The first read comes once the stream is open (or could not be): an end before that is in what it reads.
    await until(Math.max(0, Math.min(SAFETY_READ_MS, untilMs - Date.now())));
    for (;;) {
      const task = await client.json<TaskView>(`/api/v1/tasks/${id}`);
      progress(task);
      if (FINAL.has(task.state) || Date.now() >= untilMs) return task;
      await until(Math.max(0, Math.min(streaming ? SAFETY_READ_MS : POLL_MS, untilMs - Date.now())));
    }
  } finally {
    stop.abort();
    await stream;
  }
}
