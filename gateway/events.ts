/**
 * Live events for browsers: `GET /api/v1/events` is a Server-Sent Events
 * stream fed by NATS (task progress, how a task's webhook fared, node
 * events, heartbeats), never by
 * polling. One {@linkcode EventHub} per gateway holds the NATS subscriptions
 * while anyone listens, and fans each event out to the open streams.
 *
 * The stream needs the usual `Authorization: Bearer` header, so browsers read
 * it with `fetch()` (EventSource cannot send headers), and a token never goes
 * into a URL.
 *
 * @module
 */
import type { Subscription } from "@nats-io/transport-node";
import type { Bus } from "../core/bus.ts";
import {
  type HeartbeatsView,
  type NodeEvent,
  nodeHeartbeatAll,
  nodesEvent,
  type TaskNotified,
  taskNotifiedAll,
  type TaskProgress,
  taskProgressAll,
  type TokenRecord,
} from "../core/schema.ts";
import { canSee } from "./access.ts";

/** An event as the stream sends it: `event: <kind>` and `data: <JSON>`. */
export type LiveEvent =
  | { kind: "task"; data: TaskProgress }
  | { kind: "notify"; data: TaskNotified }
  | { kind: "node"; data: NodeEvent }
  | { kind: "heartbeats"; data: HeartbeatsView };

/** Fans NATS events out to listeners. */
export interface EventHub {
  /** Calls `listener` with every event until the returned function is called. */
  listen(listener: (event: LiveEvent) => void): () => void;
  /** How many listeners there are now. */
  readonly listeners: number;
}

/** Options of {@linkcode createEventHub}. */
export interface EventHubOptions {
  /** Heartbeats are sent as one batch per this many milliseconds. @default {1000} */
  heartbeatBatchMs?: number;
  /** Notes a trace step (see Logger.step): `gateway.event` when a task event came and went out to the streams. */
  step?: (step: string) => void;
}

/**
 * Creates an event hub on the bus. It subscribes when the first listener
 * comes and unsubscribes when the last one goes.
 */
export function createEventHub(bus: Bus, options: EventHubOptions = {}): EventHub {
  const batchMs = options.heartbeatBatchMs ?? 1000;
  const listeners = new Set<(event: LiveEvent) => void>();
  let subs: Subscription[] = [];
  let flushTimer: ReturnType<typeof setInterval> | undefined;
  let beats = new Map<string, HeartbeatsView["nodes"][number]>();

  const emit = (event: LiveEvent) => {
    for (const listener of listeners) listener(event);
  };
  const start = () => {
    subs = [
      // The task actor and the node registry publish these in this process: taken as they are published.
      bus.subscribe(taskProgressAll, (data) => {
        emit({ kind: "task", data });
        options.step?.("gateway.event");
      }, { inProcess: true }),
      bus.subscribe(taskNotifiedAll, (data) => emit({ kind: "notify", data })),
      bus.subscribe(nodesEvent, (data) => emit({ kind: "node", data }), { inProcess: true }),
      bus.subscribe(nodeHeartbeatAll, (hb) => {
        beats.set(hb.name, { name: hb.name, usedSlots: hb.usedSlots, seenAt: Date.now() });
      }),
    ];
    flushTimer = setInterval(() => {
      if (beats.size === 0) return;
      const nodes = [...beats.values()];
      beats = new Map();
      emit({ kind: "heartbeats", data: { nodes } });
    }, batchMs);
  };
  const stop = () => {
    for (const sub of subs) sub.unsubscribe();
    subs = [];
    clearInterval(flushTimer);
    beats.clear();
  };
  return {
    listen(listener) {
      listeners.add(listener);
      if (listeners.size === 1) start();
      return () => {
        if (listeners.delete(listener) && listeners.size === 0) stop();
      };
    },
    get listeners() {
      return listeners.size;
    },
  };
}

/** What one stream asks for. */
export interface EventFilter {
  /** The caller: a submitter only sees its own tasks. */
  who: TokenRecord;
  /** Send task events. */
  tasks: boolean;
  /** Send node events and heartbeats. */
  nodes: boolean;
  /** Only this task's events, with the instances that changed (others carry `changed: null`). */
  taskId?: string;
}

/** Returns the event to send on a stream with `filter`, or null to skip it. */
export function filterEvent(event: LiveEvent, filter: EventFilter): LiveEvent | null {
  // How a webhook fared goes to the task's own stream only (its page), never to lists.
  if (event.kind === "notify") {
    return filter.taskId === event.data.taskId && canSee(filter.who, event.data) ? event : null;
  }
  if (event.kind !== "task") return filter.nodes ? event : null;
  const task = event.data;
  if (!canSee(filter.who, task)) return null;
  if (filter.taskId) return task.taskId === filter.taskId ? event : null;
  if (!filter.tasks) return null;
  return { kind: "task", data: { ...task, changed: null } };
}

/** Options of {@linkcode eventStream}. */
export interface EventStreamOptions {
  /** Ends the stream (the gateway is shutting down). */
  signal?: AbortSignal;
  /** A comment line goes out this often, so that idle connections stay open. @default {15000} */
  pingMs?: number;
  /** A client this many events behind is cut off (it reconnects and reloads). @default {2000} */
  maxBacklog?: number;
}

const encoder = new TextEncoder();

/**
 * An SSE response: first `event: ready`, then the hub's events that pass
 * `filter`, until the client goes away or `options.signal` aborts.
 */
export function eventStream(hub: EventHub, filter: EventFilter, options: EventStreamOptions = {}): Response {
  const maxBacklog = options.maxBacklog ?? 2000;
  let close = () => {};
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      let closed = false;
      const write = (text: string) => {
        if ((controller.desiredSize ?? 0) < -maxBacklog) return close();
        controller.enqueue(encoder.encode(text));
      };
      const unlisten = hub.listen((event) => {
        const out = closed ? null : filterEvent(event, filter);
        if (out) write(`event: ${out.kind}\ndata: ${JSON.stringify(out.data)}\n\n`);
      });
      const ping = setInterval(() => write(": ping\n\n"), options.pingMs ?? 15_000);
      const onAbort = () => close();
      close = () => {
        if (closed) return;
        closed = true;
        unlisten();
        clearInterval(ping);
        options.signal?.removeEventListener("abort", onAbort);
        try {
          controller.close();
        } catch { /* already cancelled by the client */ }
      };
      if (options.signal?.aborted) return close();
      options.signal?.addEventListener("abort", onAbort, { once: true });
      write(`event: ready\ndata: ${JSON.stringify({ user: filter.who.user, role: filter.who.role })}\n\n`);
    },
    cancel() {
      close();
    },
  });
  return new Response(body, {
    headers: {
      "content-type": "text/event-stream; charset=utf-8",
      "cache-control": "no-store",
      "x-accel-buffering": "no",
    },
  });
}
