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
import { taskKey, TASKS } from "../core/kv.ts";
import { createAuditLog } from "../core/audit.ts";
import { errorBody, unwrap } from "../core/bus.ts";
import { ParallelicError, RateLimitError, ValidationError } from "../core/errors.ts";
import { Metrics } from "../core/metrics.ts";
import { checkPackageFile, DEFAULT_PACKAGE_LIMITS, type PackageLimits } from "../core/package.ts";
import {
  FINAL_STATES,
  IdempotencyKey,
  type InstanceRecord,
  type InstanceView,
  State,
  taskCancel,
  taskExplain,
  type TaskRecord,
  taskSubmit,
  type TaskView,
  type TokenRecord,
} from "../core/schema.ts";
import { matrixParams } from "../core/task_toml.ts";
import { caller, canSee, instanceState, loadTask, readInstanceRecord, readInstanceRecords } from "./access.ts";
import { createTokenCache, requireRole, untilRevoked } from "./auth.ts";
import { clientAddress, createGuard, type GuardOptions } from "./guard.ts";
import { registerDataRoutes } from "./data.ts";
import { readLog } from "./logs.ts";
import { flagQuery, instanceIndex, wholeQuery } from "./params.ts";
import { createGatewayStats } from "./stats.ts";
import { addUiRoutes } from "./ui/mod.ts";
import { readUpload } from "./upload.ts";
import type { GatewayDeps, GatewayEnv, RouteDeps } from "./context.ts";
import { DATA_SET_PATH, dataRoutes } from "./routes/data.ts";
import { eventRoutes } from "./routes/events.ts";
import { nodeRoutes } from "./routes/nodes.ts";
import { systemRoutes } from "./routes/system.ts";
import { userRoutes } from "./routes/users.ts";

export type { GatewayDeps, GatewayEnv } from "./context.ts";

/** Options of {@linkcode createGateway}. */
export interface GatewayOptions extends Partial<GuardOptions> {
  /** Package limits. */
  limits?: PackageLimits;
  /** Ends the live event streams (`/api/v1/events`); abort it before shutting the server down. */
  signal?: AbortSignal;
  /** Where uploaded packages are spooled while checked and stored. @default {the system's temporary folder} */
  spoolDir?: string;
}

/** Default request limits: bodies up to the package limit plus 1 MiB, 100 requests/s per token (burst 400). */
export const DEFAULT_GUARD_OPTIONS: GuardOptions = {
  maxBodyBytes: DEFAULT_PACKAGE_LIMITS.maxPackageBytes + 2 ** 20,
  rate: { perSecond: 100, burst: 400 },
  failureRate: { perSecond: 10, burst: 50 },
};

type Env = GatewayEnv;

/** Turns a task record into its API view. */
export function taskView(rec: TaskRecord): TaskView {
  const { nextIndex: _, ...rest } = rec;
  return { ...rest, instances: rec.spec.instances };
}

/** The API view of an instance, from its record (or from the task when it has none yet). */
export function instanceView(task: TaskRecord, index: number, rec: InstanceRecord | null): InstanceView {
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
    params: isFinalize ? {} : matrixParams(task.spec, index),
    history: rec?.history ?? [],
  };
}

/** The `Idempotency-Key` header's value, checked; undefined when there is none. */
function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const parsed = IdempotencyKey.safeParse(header);
  if (!parsed.success) {
    throw new ValidationError(
      `Cannot use Idempotency-Key '${header.slice(0, 40)}' as it is not ${parsed.error.issues[0].message}`,
      { code: "invalid_idempotency_key" },
    );
  }
  return parsed.data;
}

/** Creates the gateway's Hono app. */
export function createGateway(deps: GatewayDeps, options: GatewayOptions = {}): Hono<Env> {
  const { bus, kv, workspace, data } = deps;
  const log = deps.log.scope({ actor: "gateway" });
  const limits = options.limits ?? DEFAULT_PACKAGE_LIMITS;
  const audit = deps.audit ?? createAuditLog(kv, deps.log);
  const guard: GuardOptions = {
    maxBodyBytes: options.maxBodyBytes ??
      Math.max(DEFAULT_GUARD_OPTIONS.maxBodyBytes, limits.maxPackageBytes + 2 ** 20),
    bodyCaps: options.bodyCaps ?? [{
      method: "POST",
      pathPrefix: DATA_SET_PATH,
      // A data set's files may be up to --max-data-size in all, and --max-data-files in number; its tar adds at most
      // 8 KiB per file (a header, a PAX record for a long path, padding).
      maxBytes: data.maxDataSetBytes + data.maxDataSetFiles * 8192 + 2 ** 20,
      setBy: "--max-data-size and --max-data-files",
    }],
    rate: options.rate ?? DEFAULT_GUARD_OPTIONS.rate,
    failureRate: options.failureRate ?? DEFAULT_GUARD_OPTIONS.failureRate,
  };
  const { stats, count } = createGatewayStats();
  const app = new Hono<Env>();
  const metrics = deps.metrics ?? new Metrics();
  const uploadBytes = metrics.counter("parallelic_upload_bytes_total", "Bytes of packages uploaded to the gateway.");
  const requests = metrics.counter("parallelic_http_requests_total", "HTTP requests answered, by status class.");
  metrics.gauge(
    "parallelic_rejected_messages",
    "NATS messages dropped because they failed their schema.",
    (g) => g.set(bus.rejected),
  );

  app.use("*", async (c, next) => {
    log.step("gateway.request");
    await next();
    requests.inc({ code: `${Math.floor(c.res.status / 100)}xx` });
  });

  app.onError((err, c) => {
    if (err instanceof HTTPException) {
      count(err.status);
      return c.json({ error: { code: "http_error", message: err.message } }, err.status);
    }
    const body = errorBody(err);
    const status = err instanceof ParallelicError ? err.status : undefined;
    if (
      !status && /^(TimeoutError|NoRespondersError|RequestError|ConnectionError|ClosedConnectionError)$/.test(err.name)
    ) {
      // NATS did not answer in time (a server lost, a leader being elected): try again shortly.
      return c.json({ error: { code: "unavailable", message: `NATS did not answer: ${err.message}; try again` } }, 503);
    }
    if (!status) {
      log.error("gateway:internal-error", { path: c.req.path, error: String(err.stack ?? err) });
      return c.json({ error: { code: "internal", message: `Internal error: ${err.message}` } }, 500);
    }
    count(status);
    if (err instanceof RateLimitError) c.header("retry-after", String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
    return c.json({ error: { code: body.code, message: body.message } }, status as 400);
  });
  app.notFound((c) => c.json({ error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` } }, 404));

  // Every API route: body cap, token, rate per token, least role by method (see gateway/guard.ts).
  // Shared with the user routes, which clear it when users or tokens change.
  const tokens = createTokenCache(kv);
  const guarded = createGuard({ tokens, audit, log: deps.log }, guard);
  app.use("/api/*", guarded);
  app.use("/metrics", guarded);
  const routeDeps: RouteDeps = {
    bus,
    kv,
    workspace,
    data,
    log,
    metrics,
    audit,
    users: deps.users ?? null,
    tokens,
    stats,
    limits,
    signal: options.signal,
  };

  const getTask = (id: string, who: TokenRecord) => loadTask(kv, id, who);

  app.post("/api/v1/tasks", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "submit a task");
    // Checked before the upload is read: a bad key costs no upload.
    const key = idempotencyKey(c.req.header("idempotency-key"));
    await using upload = await readUpload(c, limits, options.spoolDir);
    log.step("gateway.read");
    uploadBytes.inc({}, upload.size);
    const checked = await checkPackageFile(upload.file, upload.name, limits, upload.digest);
    log.step("gateway.checked");
    // Data sets are pinned to versions, and the package stored, so that neither goes away before the task exists.
    const reply = await workspace.withPackage(checked.digest, async () => {
      await workspace.putPackage(checked.digest, upload);
      return await data.submitWith(checked.spec, checked.taskToml, async (spec) =>
        unwrap(
          await bus.request(taskSubmit, {
            digest: checked.digest,
            packageBytes: checked.packageBytes,
            spec,
            owner: who.user,
            // The task actor stores the audit entry in the same commit as the task.
            address: clientAddress(c),
            key,
          }),
        ), caller(who));
    });
    log.step("gateway.answered");
    // A repeat of a submit (same Idempotency-Key) answers the task the first one made: 200, not 201.
    if (reply.replayed) return c.json({ id: reply.id, state: reply.state, instances: reply.instances, replayed: true });
    return c.json({ id: reply.id, state: reply.state, instances: reply.instances }, 201);
  });

  app.get("/api/v1/tasks", async (c) => {
    const who = c.get("who");
    const stateParam = c.req.query("state");
    const parsedState = stateParam === undefined ? undefined : State.safeParse(stateParam);
    if (parsedState && !parsedState.success) {
      throw new ValidationError(
        `Cannot list tasks as state '${stateParam}' is not one of ${State.options.join(", ")}`,
        { code: "invalid_state" },
      );
    }
    const state = parsedState?.data;
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 100, min: 1, max: 1000 });
    const tasks: TaskView[] = [];
    for await (const entry of kv.list<TaskRecord>({ prefix: TASKS }, { reverse: true, batchSize: 200 })) {
      const rec = entry.value;
      if (state && rec.state !== state) continue;
      if (!canSee(who, rec)) continue;
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
    // A page past the last instance is empty (not a range read backwards).
    const from = wholeQuery(c.req.query("from"), "from", { fallback: 0, max: task.spec.instances });
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 1000, min: 1, max: 10_000 });
    const to = Math.min(task.spec.instances, from + limit);
    const records = await readInstanceRecords(kv, task.id, from, to);
    const instances: InstanceView[] = [];
    for (let i = from; i < to; i++) instances.push(instanceView(task, i, records.get(i) ?? null));
    return c.json({ instances, from, total: task.spec.instances });
  });

  app.get("/api/v1/tasks/:id/instances/:index", async (c) => {
    const task = await getTask(c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    const rec = await readInstanceRecord(kv, task.id, index);
    return c.json(instanceView(task, index, rec));
  });

  app.get("/api/v1/tasks/:id/instances/:index/logs", async (c) => {
    const task = await getTask(c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    const follow = flagQuery(c.req.query("follow"), "follow");
    const ended = async () => {
      const t = (await kv.get<TaskRecord>(taskKey(task.id))).value;
      if (!t || FINAL_STATES.has(t.state)) return true;
      const rec = await readInstanceRecord(kv, task.id, index);
      return rec !== null && FINAL_STATES.has(rec.state);
    };
    // Show only what the nodes that ran an attempt of this instance wrote under their own names.
    let ran = new Set<string>();
    const accept = async (node: string, attempt: number) => {
      if (ran.has(`${node}/${attempt}`)) return true;
      const rec = await readInstanceRecord(kv, task.id, index);
      ran = new Set(rec?.history.map((h) => `${h.node}/${h.attempt}`));
      return ran.has(`${node}/${attempt}`);
    };
    const stream = await readLog(bus.nc, task.id, index, { follow, ended, accept, signal: options.signal });
    return new Response(follow ? untilRevoked(stream, tokens, c.req.header("authorization")) : stream, {
      headers: { "content-type": "text/plain; charset=utf-8", "cache-control": "no-store" },
    });
  });

  app.get("/api/v1/tasks/:id/explain", async (c) => {
    const task = await getTask(c.req.param("id"), c.get("who"));
    const raw = c.req.query("instance");
    const index = raw === undefined ? undefined : instanceIndex(task, raw);
    const reply = unwrap(await bus.request(taskExplain, { taskId: task.id, index }));
    return c.json({ taskId: task.id, index: index ?? null, state: reply.state, explanation: reply.explanation });
  });

  app.post("/api/v1/tasks/:id/cancel", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "cancel a task");
    const task = await getTask(c.req.param("id"), who);
    const reply = unwrap(await bus.request(taskCancel, { taskId: task.id, by: who.user }));
    await audit.record({ action: "task.cancel", user: who.user, address: clientAddress(c), target: task.id });
    return c.json({ id: task.id, state: reply.state });
  });

  registerDataRoutes(app, { workspace, audit, getTask });

  app.route("/", nodeRoutes(routeDeps));
  app.route("/", userRoutes(routeDeps));
  app.route("/", systemRoutes(routeDeps));
  app.route("/", dataRoutes(routeDeps));
  app.route("/", eventRoutes(routeDeps));
  addUiRoutes(app, deps, { limits, signal: options.signal, tokens, spoolDir: options.spoolDir });

  return app;
}
