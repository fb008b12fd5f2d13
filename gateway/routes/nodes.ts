/**
 * Routes for compute nodes: the list, drain and resume, forgetting a node,
 * and the join token new nodes use. All but the list are for admins.
 *
 * @module
 */
import { Hono } from "hono";
import { unwrap } from "../../core/bus.ts";
import { NotFoundError } from "../../core/errors.ts";
import { nodesDrain, nodesList, nodesUsage } from "../../core/schema.ts";
import { requireRole } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { clientAddress, requireAdmin } from "../guard.ts";
import { nodeNameParam, wholeQuery } from "../params.ts";

/** `GET /api/v1/nodes`, drain, resume, forget and the join token. */
export function nodeRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { bus, audit } = deps;
  const app = new Hono<GatewayEnv>();
  const joinUsers = () => {
    if (!deps.users) {
      throw new NotFoundError(
        "There is no join token as the manager uses an external NATS server: give nodes their NATS credentials",
        { code: "no_join_token" },
      );
    }
    return deps.users;
  };

  app.get("/api/v1/nodes", async (c) => {
    const reply = unwrap(await bus.request(nodesList, {}));
    return c.json({ nodes: reply.nodes });
  });

  app.get("/api/v1/nodes/:name/usage", async (c) => {
    const name = nodeNameParam(c.req.param("name"));
    const minutes = wholeQuery(c.req.query("minutes"), "minutes", { fallback: 60, min: 1, max: 60 });
    return c.json(unwrap(await bus.request(nodesUsage, { name, minutes })).usage);
  });

  for (const verb of ["drain", "resume"] as const) {
    app.post(`/api/v1/nodes/:name/${verb}`, async (c) => {
      const who = c.get("who");
      requireRole(who, "admin", `${verb} a node`);
      const name = nodeNameParam(c.req.param("name"));
      const reply = unwrap(await bus.request(nodesDrain, { name, drain: verb === "drain" }));
      await audit.record({
        action: verb === "drain" ? "node.drain" : "node.resume",
        user: who.user,
        address: clientAddress(c),
        target: reply.node.name,
      });
      return c.json({ node: reply.node });
    });
  }

  app.get("/api/v1/nodes/join-token", async (c) => {
    const by = requireAdmin(c, "read the join token");
    const users = joinUsers();
    await audit.record({ action: "join-token.read", ...by });
    return c.json({ token: users.joinToken() });
  });

  app.post("/api/v1/nodes/join-token/rotate", async (c) => {
    const by = requireAdmin(c, "rotate the join token");
    const token = await joinUsers().rotateJoinToken();
    await audit.record({ action: "join-token.rotate", ...by });
    return c.json({ token });
  });

  app.post("/api/v1/nodes/:name/forget", async (c) => {
    const by = requireAdmin(c, "forget a node");
    const name = nodeNameParam(c.req.param("name"));
    if (!(await joinUsers().forgetNode(name))) {
      throw new NotFoundError(`Cannot forget node '${name}' as no node of that name joined`, {
        code: "node_not_found",
      });
    }
    await audit.record({ action: "node.forget", ...by, target: name });
    return c.json({ name, forgotten: true });
  });

  return app;
}
