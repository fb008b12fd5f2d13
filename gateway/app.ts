/**
 * The HTTP gateway: Hono routes for the API, one `onError` that turns
 * Parallelic's errors into `{"error": {"code", "message"}}` answers.
 *
 * Reads come straight from Deno KV (task records carry their counts, so no
 * read scans instances); writes go to the actors over NATS.
 *
 * @module
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { instanceKey, taskKey, TASKS } from "../actors/keys.ts";
import type { DataActor } from "../actors/data.ts";
import type { WorkspaceActor } from "../actors/workspace.ts";
import { type Bus, errorBody, unwrap } from "../core/bus.ts";
import { AuthError, NotFoundError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { checkPackage, DEFAULT_PACKAGE_LIMITS, type PackageLimits } from "../core/package.ts";
import {
  FINAL_STATES,
  type InstanceRecord,
  type InstanceView,
  nodesDrain,
  nodesList,
  State,
  taskCancel,
  type TaskRecord,
  taskSubmit,
  type TaskView,
} from "../core/schema.ts";
import { matrixParams } from "../core/task_toml.ts";
import { authenticate, type Role, type TokenRecord } from "./auth.ts";
import { packageTooLarge, readCapped, registerDataRoutes } from "./data.ts";
import { readLog } from "./logs.ts";

/** What the gateway needs. */
export interface GatewayDeps {
  bus: Bus;
  kv: Deno.Kv;
  workspace: WorkspaceActor;
  data: DataActor;
  log: Logger;
}

/** Options of {@linkcode createGateway}. */
export interface GatewayOptions {
  /** Package limits. */
  limits?: PackageLimits;
}

type Env = { Variables: { who: TokenRecord } };

const STATUS: Record<string, number> = {
  ValidationError: 400,
  AuthError: 401,
  NotFoundError: 404,
  ConflictError: 409,
  TooLargeError: 413,
  UnavailableError: 503,
};

/** Turns a task record into its API view. */
export function taskView(rec: TaskRecord): TaskView {
  const { nextIndex: _, ...rest } = rec;
  return { ...rest, instances: rec.spec.instances };
}

/** The API view of an instance, from its record (or from the task when it has none yet). */
export function instanceView(task: TaskRecord, index: number, rec: InstanceRecord | null): InstanceView {
  const last = rec?.history[rec.history.length - 1];
  const state = rec?.state ?? (task.state === "cancelled" ? "cancelled" : "queued");
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
    params: isFinalize ? {} : matrixParams(task.spec, index),
    history: rec?.history ?? [],
  };
}

const ROLE_RANK: Record<Role, number> = { viewer: 0, submitter: 1, admin: 2 };

/** Throws unless the caller's role is at least `role`. */
function need(who: TokenRecord, role: Role, what: string): void {
  if (ROLE_RANK[who.role] < ROLE_RANK[role]) {
    throw new AuthError(`Cannot ${what} as role '${who.role}' may not: it needs '${role}'`, { code: "forbidden" });
  }
}

/** Creates the gateway's Hono app. */
export function createGateway(deps: GatewayDeps, options: GatewayOptions = {}): Hono<Env> {
  const { bus, kv, workspace, data } = deps;
  const log = deps.log.scope({ actor: "gateway" });
  const limits = options.limits ?? DEFAULT_PACKAGE_LIMITS;
  const app = new Hono<Env>();

  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      return c.json({ error: { code: "http_error", message: err.message } }, err.status);
    }
    const body = errorBody(err);
    let status = STATUS[err.name];
    if (status === 401 && body.code === "forbidden") status = 403;
    if (!status) {
      log.error("gateway:internal-error", { path: c.req.path, error: String(err.stack ?? err) });
      return c.json({ error: { code: "internal", message: `Internal error: ${err.message}` } }, 500);
    }
    return c.json({ error: { code: body.code, message: body.message } }, status as 400);
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` } }, 404));

  app.get("/healthz", (c) => c.json({ ok: true }));

  app.use("/api/*", async (c, next) => {
    c.set("who", await authenticate(kv, c.req.header("authorization")));
    await next();
  });

  const getTask = async (id: string, who: TokenRecord): Promise<TaskRecord> => {
    const rec = /^t[0-9a-z]{16}$/.test(id) ? (await kv.get<TaskRecord>(taskKey(id))).value : null;
    if (!rec || (who.role === "submitter" && rec.owner !== who.user)) {
      throw new NotFoundError(`Task '${id}' does not exist`, { code: "task_not_found" });
    }
    return rec;
  };

  const parseIndex = (task: TaskRecord, raw: string) => {
    // The [finalize] run is the extra instance numbered `instances`.
    if (raw === "finalize" && task.spec.finalize) return task.spec.instances;
    const index = Number(raw);
    if (!Number.isInteger(index) || index < 0 || index >= task.spec.instances) {
      throw new NotFoundError(
        `Task '${task.id}' has no instance '${raw}': it has instances 0 to ${task.spec.instances - 1}`,
        { code: "instance_not_found" },
      );
    }
    return index;
  };

  app.get("/api/v1/whoami", (c) => c.json(c.get("who")));

  app.post("/api/v1/tasks", async (c) => {
    const who = c.get("who");
    need(who, "submitter", "submit a task");
    const declared = Number(c.req.header("content-length") ?? "0");
    const tooLarge = packageTooLarge(limits.maxPackageBytes);
    if (declared > limits.maxPackageBytes) throw tooLarge(declared);
    const type = c.req.header("content-type") ?? "";
    let bytes: Uint8Array;
    let name = c.req.query("name") ?? "";
    if (type.startsWith("multipart/form-data")) {
      const form = await c.req.formData();
      const file = form.get("package");
      if (!(file instanceof File)) {
        throw new ValidationError("Cannot accept upload as multipart field 'package' is missing or not a file", {
          code: "missing_package",
        });
      }
      bytes = new Uint8Array(await file.arrayBuffer());
      name ||= file.name;
    } else if (type === "" || type.startsWith("application/zip") || type.startsWith("application/octet-stream")) {
      bytes = await readCapped(c.req.raw.body, limits.maxPackageBytes, tooLarge);
    } else {
      throw new ValidationError(
        `Cannot accept upload of type '${type}': send application/zip, or multipart/form-data with field 'package'`,
        { code: "unsupported_media_type" },
      );
    }
    name = name.replace(/\.zip$/i, "").replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64) || "task";
    const checked = await checkPackage(bytes, name, limits);
    // Data sets are pinned to versions, and the package stored, so that neither goes away before the task exists.
    const reply = await workspace.withPackage(checked.digest, async () => {
      await workspace.putPackage(checked.digest, bytes);
      return await data.submitWith(checked.spec, checked.taskToml, async (spec) =>
        unwrap(
          await bus.request(taskSubmit, {
            digest: checked.digest,
            packageBytes: checked.packageBytes,
            spec,
            owner: who.user,
          }),
        ));
    });
    return c.json({ id: reply.id, state: reply.state, instances: reply.instances }, 201);
  });

  app.get("/api/v1/tasks", async (c) => {
    const who = c.get("who");
    const stateParam = c.req.query("state");
    const state = stateParam ? State.parse(stateParam) : undefined;
    const limit = Math.min(Math.max(Number(c.req.query("limit") ?? 100) || 100, 1), 1000);
    const tasks: TaskView[] = [];
    for await (const entry of kv.list<TaskRecord>({ prefix: TASKS }, { reverse: true, batchSize: 200 })) {
      const rec = entry.value;
      if (state && rec.state !== state) continue;
      if (who.role === "submitter" && rec.owner !== who.user) continue;
      tasks.push(taskView(rec));
      if (tasks.length >= limit) break;
    }
    return c.json({ tasks });
  });

  app.get("/api/v1/tasks/:id", async (c) => {
    return c.json(taskView(await getTask(c.req.param("id"), c.get("who"))));
  });

  app.get("/api/v1/tasks/:id/instances", async (c) => {
    const task = await getTask(c.req.param("id"), c.get("who"));
    const from = Math.max(0, Number(c.req.query("from") ?? 0) || 0);
    const limit = Math.min(Math.max(Number(c.req.query("limit") ?? 1000) || 1000, 1), 10_000);
    const to = Math.min(task.spec.instances, from + limit);
    const records = new Map<number, InstanceRecord>();
    for await (
      const e of kv.list<InstanceRecord>({ start: instanceKey(task.id, from), end: instanceKey(task.id, to) })
    ) records.set(e.value.index, e.value);
    const instances: InstanceView[] = [];
    for (let i = from; i < to; i++) instances.push(instanceView(task, i, records.get(i) ?? null));
    return c.json({ instances, from, total: task.spec.instances });
  });

  app.get("/api/v1/tasks/:id/instances/:index", async (c) => {
    const task = await getTask(c.req.param("id"), c.get("who"));
    const index = parseIndex(task, c.req.param("index"));
    const rec = (await kv.get<InstanceRecord>(instanceKey(task.id, index))).value;
    return c.json(instanceView(task, index, rec));
  });

  app.get("/api/v1/tasks/:id/instances/:index/logs", async (c) => {
    const task = await getTask(c.req.param("id"), c.get("who"));
    const index = parseIndex(task, c.req.param("index"));
    const follow = ["1", "true", "yes"].includes(c.req.query("follow") ?? "");
    const ended = async () => {
      const t = (await kv.get<TaskRecord>(taskKey(task.id))).value;
      if (!t || FINAL_STATES.has(t.state)) return true;
      const rec = (await kv.get<InstanceRecord>(instanceKey(task.id, index))).value;
      return rec !== null && FINAL_STATES.has(rec.state);
    };
    const stream = await readLog(bus.nc, task.id, index, { follow, ended });
    return new Response(stream, {
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  });

  app.post("/api/v1/tasks/:id/cancel", async (c) => {
    const who = c.get("who");
    need(who, "submitter", "cancel a task");
    const task = await getTask(c.req.param("id"), who);
    const reply = unwrap(await bus.request(taskCancel, { taskId: task.id, by: who.user }));
    return c.json({ id: task.id, state: reply.state });
  });

  app.get("/api/v1/nodes", async (c) => {
    const reply = unwrap(await bus.request(nodesList, {}));
    return c.json({ nodes: reply.nodes });
  });

  registerDataRoutes(app, { data, workspace, limits, need, getTask });

  for (const verb of ["drain", "resume"] as const) {
    app.post(`/api/v1/nodes/:name/${verb}`, async (c) => {
      need(c.get("who"), "admin", `${verb} a node`);
      const reply = unwrap(await bus.request(nodesDrain, { name: c.req.param("name"), drain: verb === "drain" }));
      return c.json({ node: reply.node });
    });
  }

  return app;
}
