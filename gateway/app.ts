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
import { taskKey } from "../core/kv.ts";
import { createAuditLog } from "../core/audit.ts";
import { errorBody } from "../core/bus.ts";
import { ParallelicError, RateLimitError } from "../core/errors.ts";
import { Metrics } from "../core/metrics.ts";
import { DEFAULT_PACKAGE_LIMITS, type PackageLimits } from "../core/package.ts";
import {
  FINAL_STATES,
  type InstanceRecord,
  type InstanceView,
  type TaskRecord,
  type TokenRecord,
} from "../core/schema.ts";
import { matrixParams } from "../core/task_toml.ts";
import { instanceState, loadTask, readInstanceRecord, readInstanceRecords } from "./access.ts";
import { createTokenCache, untilRevoked } from "./auth.ts";
import { createGuard, type GuardOptions } from "./guard.ts";
import { registerDataRoutes } from "./data.ts";
import { readLog } from "./logs.ts";
import { flagQuery, instanceIndex, wholeQuery } from "./params.ts";
import { createGatewayStats } from "./stats.ts";
import { addUiRoutes } from "./ui/mod.ts";
import type { GatewayDeps, GatewayEnv, RouteDeps } from "./context.ts";
import { DATA_SET_PATH, dataRoutes } from "./routes/data.ts";
import { eventRoutes } from "./routes/events.ts";
import { nodeRoutes } from "./routes/nodes.ts";
import { taskRoutes } from "./routes/tasks.ts";
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
    spoolDir: options.spoolDir,
  };

  const getTask = (id: string, who: TokenRecord) => loadTask(kv, id, who);

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

  registerDataRoutes(app, { workspace, getTask });

  app.route("/", taskRoutes(routeDeps));
  app.route("/", nodeRoutes(routeDeps));
  app.route("/", userRoutes(routeDeps));
  app.route("/", systemRoutes(routeDeps));
  app.route("/", dataRoutes(routeDeps));
  app.route("/", eventRoutes(routeDeps));
  addUiRoutes(app, deps, { limits, signal: options.signal, tokens, spoolDir: options.spoolDir });

  return app;
}
