/**
 * Routes for users and their tokens: who the caller is, and, for admins,
 * adding and removing users and rotating their tokens.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { Role } from "../../core/schema.ts";
import { addUser, listUsers, removeUser, rotateToken } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { requireAdmin } from "../guard.ts";
import { readJson } from "../params.ts";

const NewUser = z.object({ name: z.string(), role: Role });

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

  app.post("/api/v1/users/:name/token", async (c) => {
    const by = requireAdmin(c, "rotate a token");
    const name = c.req.param("name");
    const token = await rotateToken(kv, name, { tokens: deps.tokens });
    await audit.record({ action: "token.rotate", ...by, target: name });
    return c.json({ name, token });
  });

  return app;
}
