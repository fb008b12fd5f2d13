/**
 * Routes for users, tokens, the audit log and refusal
 * counters. All but `/api/v1/stats` are for admins.
 *
 * @module
 */
import type { Context, Hono } from "hono";
import { z } from "zod";
import type { AuditLog } from "../core/audit.ts";
import type { Bus } from "../core/bus.ts";
import { ValidationError } from "../core/errors.ts";
import { Role, type TokenRecord } from "../core/schema.ts";
import { addUser, listUsers, removeUser, rotateToken, type TokenCache } from "./auth.ts";
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

/** Parses a JSON body against `schema`, as a 400 that says what is wrong. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch (e) {
    if ((e as Error).name === "TooLargeError") throw e;
    throw new ValidationError(`Cannot read request body as it is not JSON (${(e as Error).message})`, {
      code: "invalid_json",
    });
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ValidationError(`Cannot accept request as field '${issue.path.join(".")}' is invalid: ${issue.message}`, {
      code: "invalid_request",
    });
  }
  return parsed.data;
}

const NewUser = z.object({ name: z.string(), role: Role });

/** Adds the routes to `app`. */
export function addSecurityRoutes(app: Hono<{ Variables: { who: TokenRecord } }>, deps: SecurityRouteDeps): void {
  const { kv, audit } = deps;
  const admin = requireAdmin;

  app.get("/api/v1/users", async (c) => {
    admin(c, "list users");
    return c.json({ users: await listUsers(kv) });
  });

  app.post("/api/v1/users", async (c) => {
    const by = admin(c, "add a user");
    const { name, role } = await readJson(c, NewUser);
    const token = await addUser(kv, name, role, { tokens: deps.tokens });
    await audit.record({ action: "user.add", ...by, target: name, detail: `role ${role}` });
    return c.json({ name, role, token }, 201);
  });

  app.delete("/api/v1/users/:name", async (c) => {
    const by = admin(c, "remove a user");
    const name = c.req.param("name");
    await removeUser(kv, name, { tokens: deps.tokens });
    await audit.record({ action: "user.remove", ...by, target: name });
    return c.json({ name, removed: true });
  });

  app.post("/api/v1/users/:name/token", async (c) => {
    const by = admin(c, "rotate a token");
    const name = c.req.param("name");
    const token = await rotateToken(kv, name, { tokens: deps.tokens });
    await audit.record({ action: "token.rotate", ...by, target: name });
    return c.json({ name, token });
  });

  app.get("/api/v1/audit", async (c) => {
    admin(c, "read the audit log");
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 100, min: 1, max: 1000 });
    const before = c.req.query("before");
    const beforeMs = before === undefined ? undefined : wholeQuery(before, "before", { fallback: 0 });
    return c.json({ entries: await audit.list({ limit, beforeMs }) });
  });

  app.get("/api/v1/stats", (c) => c.json({ bus: { rejected: deps.bus.rejected }, gateway: deps.stats }));
}
