/**
 * Routes for the instances of a task: pages of their views, one instance,
 * its log (whole or followed), and the states of many at once, one letter
 * each (for a grid of 10,000 instances). Read from Deno KV, by range.
 *
 * @module
 */
import { Hono } from "hono";
import {
  FINAL_STATES,
  type InstanceRecord,
  type InstanceStatesView,
  type InstanceView,
  STATE_LETTERS,
  type TaskRecord,
} from "../../core/schema.ts";
import { taskKey } from "../../core/kv.ts";
import { matrixParams } from "../../core/task_toml.ts";
import { inputParams, type InputRows } from "../../core/inputs.ts";
import { instanceState, loadTask, readInstanceRecord, readInstanceRecords } from "../access.ts";
import { untilRevoked } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { readFailedPage } from "../failures.ts";
import { createInputsReader } from "../inputs.ts";
import { readLog } from "../logs.ts";
import { flagQuery, instanceIndex, logQuery, stateQuery, wholeQuery } from "../params.ts";

/** Most instance states one `/states` answer carries. */
export const MAX_STATES_PAGE = 100_000;

/** The API view of an instance, from its record (or from the task when it has none yet). */
export function instanceView(
  task: TaskRecord,
  index: number,
  rec: InstanceRecord | null,
  rows: InputRows | null = null,
): InstanceView {
  const last = rec?.history[rec.history.length - 1];
  const state = instanceState(task, rec);
  const isFinalize = index === task.spec.instances;
  return {
    taskId: task.id,
    index,
    state,
    attempt: rec?.attempt ?? 0,
    node: rec?.node ?? last?.node ?? null,
    exitCode: last?.exitCode ?? null,
    signal: last?.signal ?? null,
    startedAt: last?.startedAt ?? null,
    endedAt: last?.endedAt ?? null,
    params: isFinalize ? {} : rows ? inputParams(rows, index) : matrixParams(task.spec, index),
    history: rec?.history ?? [],
  };
}

/**
 * Lines saying which attempts of an instance ran in the chunk of another (`[task] chunk`), whose log holds their
 * output; empty when none did (or, with `attempt`, when that one did not).
 */
export function chunkNote(taskId: string, rec: InstanceRecord | null, { attempt }: { attempt?: number } = {}): string {
  return (rec?.history ?? [])
    .filter((h) => h.chunk && h.chunk.first !== rec!.index && (attempt === undefined || h.attempt === attempt))
    .map((h) =>
      `[instance ${rec!.index} attempt ${h.attempt} ran in the chunk of instances ${h.chunk!.first}-${h.chunk!.last}` +
      ` (one process): its log is under instance ${h.chunk!.first}: parallelic logs ${taskId} --instance ` +
      `${h.chunk!.first}]\n`
    ).join("");
}

/** A stream of `text` then `rest`. */
function prepend(text: string, rest: ReadableStream<Uint8Array>): ReadableStream<Uint8Array> {
  const head = new TextEncoder().encode(text);
  const reader = rest.getReader();
  let sentHead = false;
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      if (!sentHead) {
        sentHead = true;
        return controller.enqueue(head);
      }
      const next = await reader.read();
      if (next.done) controller.close();
      else controller.enqueue(next.value);
    },
    cancel: (why) => reader.cancel(why),
  });
}

/** The `/api/v1/tasks/{id}/instances` routes and `GET /api/v1/tasks/{id}/states`. */
export function instanceRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { bus, kv } = deps;
  const app = new Hono<GatewayEnv>();
  const inputsOf = createInputsReader(deps.workspace, deps.limits);

  app.get("/api/v1/tasks/:id/instances", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    // A page past the last instance is empty (not a range read backwards).
    const from = wholeQuery(c.req.query("from"), "from", { fallback: 0, max: task.spec.instances });
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 1000, min: 1, max: 10_000 });
    if (stateQuery(c.req.query("state")) === "failed") {
      const [{ records, next }, rows] = await Promise.all([readFailedPage(kv, task, from, limit), inputsOf(task)]);
      const instances = records.map((r) => instanceView(task, r.index, r, rows));
      return c.json({ instances, from, total: task.counts.failed, next });
    }
    const to = Math.min(task.spec.instances, from + limit);
    const records = await readInstanceRecords(kv, task.id, from, to);
    const instances: InstanceView[] = [];
    const rows = await inputsOf(task);
    for (let i = from; i < to; i++) instances.push(instanceView(task, i, records.get(i) ?? null, rows));
    return c.json({ instances, from, total: task.spec.instances });
  });

  app.get("/api/v1/tasks/:id/instances/:index", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    const rec = await readInstanceRecord(kv, task.id, index);
    return c.json(instanceView(task, index, rec, await inputsOf(task)));
  });

  app.get("/api/v1/tasks/:id/instances/:index/logs", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    const follow = flagQuery(c.req.query("follow"), "follow");
    const view = logQuery(c.req.query("format"), c.req.query("attempt"), c.req.query("after"));
    const ended = async () => {
      const t = (await kv.get<TaskRecord>(taskKey(task.id))).value;
      if (!t || FINAL_STATES.has(t.state)) return true;
      const rec = await readInstanceRecord(kv, task.id, index);
      if (rec !== null && FINAL_STATES.has(rec.state)) return true;
      // One attempt's log ends with that attempt (its result comes after its log is stored).
      return view.attempt !== undefined && !!rec?.history.find((h) => h.attempt === view.attempt)?.endedAt;
    };
    // Show only what the nodes that ran an attempt of this instance wrote under their own names.
    let ran = new Set<string>();
    const accept = async (node: string, attempt: number) => {
      if (ran.has(`${node}/${attempt}`)) return true;
      const rec = await readInstanceRecord(kv, task.id, index);
      ran = new Set(rec?.history.map((h) => `${h.node}/${h.attempt}`));
      return ran.has(`${node}/${attempt}`);
    };
    let stream = await readLog(bus.nc, task.id, index, { follow, ended, accept, signal: deps.signal, ...view });
    // An attempt that ran in another instance's chunk wrote nothing here: the text says where its output is.
    const note = view.format === "ndjson" ? "" : chunkNote(task.id, await readInstanceRecord(kv, task.id, index), {
      attempt: view.attempt,
    });
    if (note) stream = prepend(note, stream);
    const type = view.format === "ndjson" ? "application/x-ndjson" : "text/plain; charset=utf-8";
    return new Response(follow ? untilRevoked(stream, deps.tokens, c.req.header("authorization")) : stream, {
      headers: { "content-type": type, "cache-control": "no-store" },
    });
  });

  app.get("/api/v1/tasks/:id/states", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    // A page past the last instance is empty (not a range read backwards).
    const from = wholeQuery(c.req.query("from"), "from", { fallback: 0, max: task.spec.instances });
    const limit = wholeQuery(c.req.query("limit"), "limit", {
      fallback: MAX_STATES_PAGE,
      min: 1,
      max: MAX_STATES_PAGE,
    });
    const to = Math.min(task.spec.instances, from + limit);
    const records = await readInstanceRecords(kv, task.id, from, to);
    let states = "";
    for (let i = from; i < to; i++) states += STATE_LETTERS[instanceState(task, records.get(i) ?? null)];
    return c.json({ from, total: task.spec.instances, states } satisfies InstanceStatesView);
  });

  return app;
}
