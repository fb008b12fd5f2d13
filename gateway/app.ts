/**
 * The HTTP gateway: one Hono app that checks every API request (see
 * `gateway/guard.ts`), answers every error one way (see `gateway/errors.ts`)
 * and mounts one sub-app per resource from `gateway/routes/`.
 *
 * @module
 */
import { Hono } from "hono";
import { createAuditLog } from "../core/audit.ts";
import { Metrics } from "../core/metrics.ts";
import { DEFAULT_PACKAGE_LIMITS, type PackageLimits } from "../core/package.ts";
import { createTokenCache } from "./auth.ts";
import { errorHandler, notFound } from "./errors.ts";
import { createGuard, type GuardOptions } from "./guard.ts";
import { createGatewayStats } from "./stats.ts";
import type { GatewayDeps, GatewayEnv, NotifySettings, RouteDeps } from "./context.ts";
import { DATA_SET_PATH, dataRoutes } from "./routes/data.ts";
import { eventRoutes } from "./routes/events.ts";
import { instanceRoutes } from "./routes/instances.ts";
import { nodeRoutes } from "./routes/nodes.ts";
import { outputRoutes } from "./routes/outputs.ts";
import { taskChangeRoutes } from "./routes/task_changes.ts";
import { taskRoutes } from "./routes/tasks.ts";
import { systemRoutes } from "./routes/system.ts";
import { uiRoutes } from "./routes/ui.ts";
import { userRoutes } from "./routes/users.ts";
import { workspaceRoutes } from "./routes/workspace.ts";

export type { GatewayDeps, GatewayEnv } from "./context.ts";

/** Options of {@linkcode createGateway}. */
export interface GatewayOptions extends Partial<GuardOptions> {
  /** Package limits. */
  limits?: PackageLimits;
  /** Ends the live event streams (`/api/v1/events`); abort it before shutting the server down. */
  signal?: AbortSignal;
  /** Where uploaded packages are spooled while checked and stored. @default {the system's temporary folder} */
  spoolDir?: string;
  /** Highest priority a submitter may give, at submit and later (`--max-submitter-priority`). */
  maxSubmitterPriority?: number;
  /** Task notifications' settings, shown to admins (`GET /api/v1/notify`); absent: none. */
  notify?: NotifySettings;
}

/** Default request limits: bodies up to the package limit plus 1 MiB, 100 requests/s per token (burst 400). */
export const DEFAULT_GUARD_OPTIONS: GuardOptions = {
  maxBodyBytes: DEFAULT_PACKAGE_LIMITS.maxPackageBytes + 2 ** 20,
  rate: { perSecond: 100, burst: 400 },
  failureRate: { perSecond: 10, burst: 50 },
};

type Env = GatewayEnv;

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

  // The one error path: route modules set no onError of their own, so every error ends here.
  app.onError(errorHandler(log, count));
  app.notFound(notFound);

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
    maxSubmitterPriority: options.maxSubmitterPriority,
    notify: options.notify ?? null,
  };

  app.route("/", taskRoutes(routeDeps));
  app.route("/", taskChangeRoutes(routeDeps));
  app.route("/", instanceRoutes(routeDeps));
  app.route("/", workspaceRoutes(routeDeps));
  app.route("/", outputRoutes(routeDeps));
  app.route("/", nodeRoutes(routeDeps));
  app.route("/", userRoutes(routeDeps));
  app.route("/", systemRoutes(routeDeps));
  app.route("/", dataRoutes(routeDeps));
  app.route("/", eventRoutes(routeDeps));
  app.route("/", uiRoutes());

  return app;
}
