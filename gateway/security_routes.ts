/**
 * Routes for the audit log and refusal counters. The audit log is for
 * admins.
 *
 * @module
 */
import type { Hono } from "hono";
import type { AuditLog } from "../core/audit.ts";
import type { Bus } from "../core/bus.ts";
import type { TokenRecord } from "../core/schema.ts";
import type { TokenCache } from "./auth.ts";
import { requireAdmin } from "./guard.ts";
import { wholeQuery } from "./params.ts";
import type { GatewayStats } from "./stats.ts";

/** What the routes need. */
export interface SecurityRouteDeps {
  kv: Deno.Kv;
  bus: Bus;
  audit: AuditLog;
  /** The guard's token cache: cleared whenever users or tokens change. */
  tokens: TokenCache;
  stats: GatewayStats;
}

/** Adds the routes to `app`. */
export function addSecurityRoutes(app: Hono<{ Variables: { who: TokenRecord } }>, deps: SecurityRouteDeps): void {
  const { audit } = deps;
  const admin = requireAdmin;

  app.get("/api/v1/audit", async (c) => {
    admin(c, "read the audit log");
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 100, min: 1, max: 1000 });
    const before = c.req.query("before");
    const beforeMs = before === undefined ? undefined : wholeQuery(before, "before", { fallback: 0 });
    return c.json({ entries: await audit.list({ limit, beforeMs }) });
  });

  app.get("/api/v1/stats", (c) => c.json({ bus: { rejected: deps.bus.rejected }, gateway: deps.stats }));
}
