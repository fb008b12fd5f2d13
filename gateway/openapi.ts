/**
 * The OpenAPI 3.1 description of the gateway's API, made from the same zod
 * schemas the gateway and actors use (`z.toJSONSchema`), served at
 * `GET /api/v1/openapi.json`. A test checks that every API route is in it.
 *
 * @module
 */
import { z } from "zod";
import { RerunBody, RerunView, UpdateBody, UpdateView } from "./routes/task_changes.ts";
import { OUTPUT_OPERATIONS } from "./routes/outputs.ts";
import { RelatedView } from "./related.ts";
import { USER_OPERATIONS } from "./routes/users.ts";
import {
  DataSetView,
  ErrorBody,
  IdempotencyKey,
  InstanceView,
  NodeRecord,
  NodeUsageView,
  State,
  SubmitView,
  TaskView,
} from "../core/schema.ts";

/** One API operation. */
export interface Operation {
  method: "get" | "post" | "delete" | "put" | "patch";
  /** Path in Hono syntax (`/api/v1/tasks/:id`). */
  path: string;
  operationId: string;
  summary: string;
  /** Query parameters and their schemas. */
  query?: Record<string, z.ZodType>;
  /** Request headers (beyond Authorization) and their schemas. */
  headers?: Record<string, z.ZodType>;
  /** Request body media types and their schemas (binary bodies as `format: binary`). */
  body?: Record<string, z.ZodType | "binary">;
  /** The success status and the schema (or media type) of its body. */
  response: { status: number; schema: z.ZodType | "text" | "event-stream" | "binary" };
  /** False for the routes that need no token. */
  auth?: boolean;
}

const Ok = z.object({ ok: z.literal(true) });
const TaskList = z.object({
  tasks: z.array(TaskView),
  /** Give it as `before` for the next page; null after the last. */
  next: z.string().nullable(),
  /** How many tasks the filter (state, and a submitter's own) holds in all; null with q (a search is not counted). */
  total: z.number().int().nullable(),
});
const InstancePage = z.object({
  instances: z.array(InstanceView),
  from: z.number().int(),
  /** Instances in the task, or with `state=failed` its failed ones. */
  total: z.number().int(),
  /** With `state=failed`: `from` for the next page, or null after the last. */
  next: z.number().int().nullable().optional(),
});
const NodeList = z.object({ nodes: z.array(NodeRecord) });
const Explain = z.object({
  taskId: z.string(),
  index: z.number().int().nullable(),
  state: State,
  explanation: z.string(),
});
const WhoAmI = z.object({ user: z.string(), role: z.string(), createdAt: z.number() });
const Cancelled = z.object({ id: z.string(), state: State });
const States = z.object({ from: z.number().int(), total: z.number().int(), states: z.string() });
const PackageCheck = z.object({ ok: z.boolean() }).passthrough();

const zip = {
  "application/zip": "binary",
  // `overrides`: a TOML fragment laid over task.toml before its checks.
  "multipart/form-data": z.object({ package: z.string(), overrides: z.string().optional() }),
} as const;

/** Every operation of the API. */
export const OPERATIONS: Operation[] = [
  {
    method: "get",
    path: "/healthz",
    operationId: "health",
    summary: "Liveness",
    response: { status: 200, schema: Ok },
    auth: false,
  },
  {
    method: "get",
    path: "/metrics",
    operationId: "metrics",
    summary: "Prometheus metrics",
    response: { status: 200, schema: "text" },
  },
  {
    method: "get",
    path: "/api/v1/openapi.json",
    operationId: "openapi",
    summary: "This document",
    response: { status: 200, schema: z.object({}).passthrough() },
  },
  {
    method: "get",
    path: "/api/v1/whoami",
    operationId: "whoami",
    summary: "Who the token belongs to",
    response: { status: 200, schema: WhoAmI },
  },
  {
    method: "post",
    path: "/api/v1/tasks",
    operationId: "submitTask",
    summary:
      "Submit a task package (a zip of the task root); with an Idempotency-Key, a repeat within a day answers 200 with the task the first made",
    // strict: refuse (400 `unplaceable`) a task no known node could ever run, instead of a warning.
    query: {
      name: z.string(),
      after: z.string().describe("task ids, comma-separated, this task waits for (added to task.toml's [after] tasks)"),
      strict: z.enum(["1", "0"]),
    },
    headers: { "Idempotency-Key": IdempotencyKey },
    body: zip,
    response: { status: 201, schema: SubmitView },
  },
  {
    method: "post",
    path: "/api/v1/packages/check",
    operationId: "checkPackage",
    summary: "Check a package without storing it",
    query: { name: z.string() },
    body: zip,
    response: { status: 200, schema: PackageCheck },
  },
  {
    method: "get",
    path: "/api/v1/tasks",
    operationId: "listTasks",
    summary: "Tasks, newest first; q searches name, owner or id; before pages on from next",
    query: { state: State, limit: z.number().int(), q: z.string(), before: z.string() },
    response: { status: 200, schema: TaskList },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id",
    operationId: "getTask",
    summary: "A task and its counts",
    response: { status: 200, schema: TaskView },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/instances",
    operationId: "listInstances",
    summary: "A page of a task's instances (or, with state=failed, of its failed ones)",
    query: { from: z.number().int(), limit: z.number().int(), state: z.enum(["failed"]) },
    response: { status: 200, schema: InstancePage },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/states",
    operationId: "instanceStates",
    summary: "One letter per instance state (q, r, s, f, c)",
    query: { from: z.number().int(), limit: z.number().int() },
    response: { status: 200, schema: States },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/instances/:index",
    operationId: "getInstance",
    summary: "An instance with its attempt history",
    response: { status: 200, schema: InstanceView },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/instances/:index/logs",
    operationId: "getInstanceLog",
    summary: "An instance's output; follow=1 streams it; format=ndjson tags each chunk with attempt, stream, time",
    query: {
      follow: z.enum(["1", "0"]),
      format: z.enum(["text", "ndjson"]),
      attempt: z.number().int(),
      after: z.number().int(),
    },
    response: { status: 200, schema: "text" },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/explain",
    operationId: "explainTask",
    summary: "Why a task or instance is where it is",
    query: { instance: z.number().int() },
    response: { status: 200, schema: Explain },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/related",
    operationId: "relatedTasks",
    summary: "The data set versions a task pinned, the tasks it waits for ([after]) and those that wait for it",
    response: { status: 200, schema: RelatedView },
  },
  {
    method: "post",
    path: "/api/v1/tasks/:id/cancel",
    operationId: "cancelTask",
    summary: "Cancel a task",
    response: { status: 200, schema: Cancelled },
  },
  {
    method: "patch",
    path: "/api/v1/tasks/:id",
    operationId: "updateTask",
    summary: 'Change a running or queued task: {"priority": 80} and/or {"held": true} (nothing new is dispatched, ' +
      'what runs goes on) or {"held": false}',
    body: { "application/json": UpdateBody },
    response: { status: 200, schema: UpdateView },
  },
  {
    method: "post",
    path: "/api/v1/tasks/:id/rerun",
    operationId: "rerunTask",
    summary: 'Run again, in the same task, what did not succeed ({"instances": "failed"}), some instances ' +
      '({"instances": [3, 7]}) or finalize alone ({"finalize": true}); on a task that ended',
    body: { "application/json": RerunBody },
    response: { status: 200, schema: RerunView },
  },
  {
    method: "get",
    path: "/api/v1/nodes",
    operationId: "listNodes",
    summary: "Nodes",
    response: { status: 200, schema: NodeList },
  },
  {
    method: "get",
    path: "/api/v1/nodes/:name/usage",
    operationId: "nodeUsage",
    summary: "A node's CPU, memory and slot use over the last minutes (at most 60), one sample per 30 s",
    query: { minutes: z.number().int() },
    response: { status: 200, schema: NodeUsageView },
  },
  {
    method: "post",
    path: "/api/v1/nodes/:name/drain",
    operationId: "drainNode",
    summary: "Take nothing new on a node",
    response: { status: 200, schema: z.object({ node: NodeRecord }) },
  },
  {
    method: "post",
    path: "/api/v1/nodes/:name/resume",
    operationId: "resumeNode",
    summary: "Undo a drain",
    response: { status: 200, schema: z.object({ node: NodeRecord }) },
  },
  ...USER_OPERATIONS,
  {
    method: "get",
    path: "/api/v1/nodes/join-token",
    operationId: "joinToken",
    summary: "The token nodes join with (admin)",
    response: { status: 200, schema: z.object({ token: z.string() }) },
  },
  {
    method: "get",
    path: "/api/v1/notify",
    operationId: "notifySettings",
    summary: "The key task notifications are signed with, the addresses webhooks may reach, the public URL (admin)",
    response: {
      status: 200,
      schema: z.object({
        secret: z.string().nullable(),
        allow: z.array(z.string()),
        publicUrl: z.string().nullable(),
        signatureHeader: z.string(),
        timestampHeader: z.string(),
      }),
    },
  },
  {
    method: "post",
    path: "/api/v1/nodes/join-token/rotate",
    operationId: "rotateJoinToken",
    summary: "A new join token (admin)",
    response: { status: 200, schema: z.object({ token: z.string() }) },
  },
  {
    method: "post",
    path: "/api/v1/nodes/:name/forget",
    operationId: "forgetNode",
    summary: "Remove a node's NATS user (admin)",
    response: { status: 200, schema: z.object({ name: z.string(), forgotten: z.literal(true) }) },
  },
  {
    method: "get",
    path: "/api/v1/stats",
    operationId: "stats",
    summary: "Refusals so far: messages dropped by their schema, 401/403/404/413/429 answers",
    response: { status: 200, schema: z.object({}).passthrough() },
  },
  {
    method: "get",
    path: "/api/v1/limits",
    operationId: "limits",
    summary: "Upload size limits",
    response: { status: 200, schema: z.object({}).passthrough() },
  },
  {
    method: "get",
    path: "/api/v1/storage",
    operationId: "storage",
    summary: "Bytes held in each store",
    response: { status: 200, schema: z.object({}).passthrough() },
  },
  {
    method: "get",
    path: "/api/v1/data",
    operationId: "listDataSets",
    summary: "Data sets the caller may see (shared ones, their own; admins every one), and their versions",
    response: { status: 200, schema: z.object({ datasets: z.array(DataSetView) }) },
  },
  {
    method: "get",
    path: "/api/v1/data/:name",
    operationId: "getDataSet",
    summary: "A data set and its versions",
    response: { status: 200, schema: DataSetView },
  },
  {
    method: "post",
    path: "/api/v1/data/:name",
    operationId: "putDataSet",
    summary:
      "Upload a new version: a tar stream, or one file with ?file=NAME; a new data set is not shared unless shared=1",
    query: { file: z.string(), shared: z.enum(["1", "0"]) },
    body: { "application/x-tar": "binary", "application/octet-stream": "binary" },
    response: { status: 201, schema: z.object({}).passthrough() },
  },
  {
    method: "patch",
    path: "/api/v1/data/:name",
    operationId: "shareDataSet",
    summary: "Share a data set with every user, or stop sharing it (its owner or an admin)",
    body: { "application/json": z.object({ shared: z.boolean() }) },
    response: { status: 200, schema: DataSetView },
  },
  {
    method: "delete",
    path: "/api/v1/data/:name",
    operationId: "deleteDataSet",
    summary: "Delete every version not in use",
    response: { status: 200, schema: z.object({}).passthrough() },
  },
  {
    method: "delete",
    path: "/api/v1/data/:name/:version",
    operationId: "deleteDataVersion",
    summary: "Delete a version (409 while a queued or running task uses it)",
    response: { status: 200, schema: z.object({}).passthrough() },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/workspace.zip",
    operationId: "workspaceZip",
    summary: "The task's outputs as a zip, streamed (?instance=N or ?finalize=1 for one)",
    query: { instance: z.number().int(), finalize: z.enum(["1", "0"]) },
    response: { status: 200, schema: "binary" },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/workspace.tar",
    operationId: "workspaceTar",
    summary: "The task's outputs as a tar, streamed",
    query: { instance: z.number().int(), finalize: z.enum(["1", "0"]) },
    response: { status: 200, schema: "binary" },
  },
  ...OUTPUT_OPERATIONS,
  {
    method: "delete",
    path: "/api/v1/tasks/:id",
    operationId: "deleteTask",
    summary: "Delete a finished task, its outputs, logs and records",
    response: { status: 200, schema: z.object({ id: z.string(), deleted: z.literal(true), freedBytes: z.number() }) },
  },
  {
    method: "get",
    path: "/api/v1/events",
    operationId: "events",
    summary: "Live task and node events (Server-Sent Events)",
    query: {
      task: z.string().describe("only this task's events"),
      topics: z.string().describe("tasks, nodes or tasks,nodes (the default)"),
    },
    response: { status: 200, schema: "event-stream" },
  },
];

const json = (schema: z.ZodType) => z.toJSONSchema(schema, { unrepresentable: "any", io: "output" });

/** Builds the OpenAPI document. */
export function openApiDocument(operations: Operation[] = OPERATIONS): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  const errorResponse = {
    description: "Error",
    content: { "application/json": { schema: json(z.object({ error: ErrorBody.omit({ name: true }) })) } },
  };
  for (const op of operations) {
    const path = op.path.replace(/:(\w+)/g, "{$1}");
    const params = [...op.path.matchAll(/:(\w+)/g)].map((m) => ({
      name: m[1],
      in: "path",
      required: true,
      schema: { type: m[1] === "index" ? "integer" : "string" },
    }));
    for (const [name, schema] of Object.entries(op.query ?? {})) {
      params.push({ name, in: "query", required: false, schema: json(schema) as { type: string } });
    }
    for (const [name, schema] of Object.entries(op.headers ?? {})) {
      params.push({ name, in: "header", required: false, schema: json(schema) as { type: string } });
    }
    const { status, schema } = op.response;
    const content = schema === "text"
      ? { "text/plain": { schema: { type: "string" } } }
      : schema === "event-stream"
      ? { "text/event-stream": { schema: { type: "string" } } }
      : schema === "binary"
      ? { "application/octet-stream": { schema: { type: "string", format: "binary" } } }
      : { "application/json": { schema: json(schema) } };
    paths[path] ??= {};
    paths[path][op.method] = {
      operationId: op.operationId,
      summary: op.summary,
      parameters: params,
      ...(op.body && {
        requestBody: {
          required: true,
          content: Object.fromEntries(
            Object.entries(op.body).map(([type, s]) => [
              type,
              { schema: s === "binary" ? { type: "string", format: "binary" } : json(s) },
            ]),
          ),
        },
      }),
      responses: { [status]: { description: "OK", content }, "4XX": errorResponse },
      ...(op.auth === false ? { security: [] } : {}),
    };
  }
  return {
    openapi: "3.1.0",
    info: { title: "Parallelic API", version: "1" },
    components: { securitySchemes: { bearer: { type: "http", scheme: "bearer" } } },
    security: [{ bearer: [] }],
    paths,
  };
}
