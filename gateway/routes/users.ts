/**
 * Routes for users and their tokens: who the caller is, and, for admins,
 * adding and removing users and rotating their tokens.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { AuditAction, AuditEntry } from "../../core/audit.ts";
import { Role } from "../../core/schema.ts";
import { addUser, listUsers, removeUser, rotateToken, setRole } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import type { Operation } from "../openapi.ts";
import { requireAdmin } from "../guard.ts";
import { readJson } from "../params.ts";

const NewUser = z.object({ name: z.string(), role: Role });
/** `PATCH /api/v1/users/{name}`'s body. */
export const RoleChange = z.object({ role: Role });

const UserToken = z.object({ name: z.string(), token: z.string() });
const Int = z.number().int();

/** The operations of the user, token and audit routes, for gateway/openapi.ts. */
export const USER_OPERATIONS: Operation[] = [
  {
    method: "get",
    path: "/api/v1/users",
    operationId: "listUsers",
    summary: "Users and roles (admin)",
    response: {
      status: 200,
      schema: z.object({ users: z.array(z.object({ name: z.string(), role: Role }).passthrough()) }),
    },
  },
  {
    method: "post",
    path: "/api/v1/users",
    operationId: "addUser",
    summary: "Add a user; the token is shown only here (admin)",
    body: { "application/json": z.object({ name: z.string(), role: Role }) },
    response: { status: 201, schema: UserToken.extend({ role: Role }) },
  },
  {
    method: "delete",
    path: "/api/v1/users/:name",
    operationId: "removeUser",
    summary: "Remove a user (admin)",
    response: { status: 200, schema: z.object({ name: z.string(), removed: z.literal(true) }) },
  },
  {
    method: "patch",
    path: "/api/v1/users/:name",
    operationId: "setUserRole",
    summary: 'Change a user\'s role: {"role": "viewer"}; their token stays (admin; never the last admin)',
    body: { "application/json": RoleChange },
    response: { status: 200, schema: z.object({ name: z.string(), role: Role }) },
  },
  {
    method: "post",
    path: "/api/v1/users/:name/token",
    operationId: "rotateToken",
    summary: "Give a user a new token (admin)",
    response: { status: 200, schema: UserToken },
  },
  {
    method: "get",
    path: "/api/v1/audit",
    operationId: "audit",
    summary: "Audit entries, newest first, filtered by user and action; cursor pages on from next (admin)",
    query: { limit: Int, before: Int, cursor: z.string(), user: z.string(), action: AuditAction },
    response: { status: 200, schema: z.object({ entries: z.array(AuditEntry), next: z.string().nullable() }) },
  },
];

/** `GET /api/v1/whoami` and the `/api/v1/users` routes. */
export function userRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { kv, audit } = deps;
  const app = new Hono<GatewayEnv>();

  app.get("/api/v1/whoami", (c) => c.json(c.get("who")));

  app.get("/api/v1/users", async (c) => {
    requireAdmin(c, "list users");
    return c.json({ users: await listUsers(kv) });
  });

  app.post("/api/v1/users", async (c) => {
    const by = requireAdmin(c, "add a user");
    const { name, role } = await readJson(c, NewUser);
    const token = await addUser(kv, name, role, { tokens: deps.tokens });
    await audit.record({ action: "user.add", ...by, target: name, detail: `role ${role}` });
    return c.json({ name, role, token }, 201);
  });

  app.delete("/api/v1/users/:name", async (c) => {
    const by = requireAdmin(c, "remove a user");
    const name = c.req.param("name");
    await removeUser(kv, name, { tokens: deps.tokens });
    await audit.record({ action: "user.remove", ...by, target: name });
    return c.json({ name, removed: true });
  });

  app.patch("/api/v1/users/:name", async (c) => {
    const by = requireAdmin(c, "change a user's role");
    const name = c.req.param("name");
    const { role } = await readJson(c, RoleChange);
    await setRole(kv, name, role, { tokens: deps.tokens });
    await audit.record({ action: "user.role", ...by, target: name, detail: `role ${role}` });
    return c.json({ name, role });
  });

  app.post("/api/v1/users/:name/token", async (c) => {
    const by = requireAdmin(c, "rotate a token");
    const name = c.req.param("name");
    const token = await rotateToken(kv, name, { tokens: deps.tokens });
    await audit.record({ action: "token.rotate", ...by, target: name });
    return c.json({ name, token });
  });

  return app;
}
