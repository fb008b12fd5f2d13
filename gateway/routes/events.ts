/**
 * The live event stream, `GET /api/v1/events` (see gateway/events.ts for
 * the hub and the stream): task progress and node events as Server-Sent
 * Events, ended when the caller's token is revoked.
 *
 * @module
 */
import { Hono } from "hono";
import { ValidationError } from "../../core/errors.ts";
import { loadTask } from "../access.ts";
import { untilRevoked } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { createEventHub, eventStream } from "../events.ts";
import { shown } from "../params.ts";

/** `GET /api/v1/events`. */
export function eventRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { kv, bus } = deps;
  const app = new Hono<GatewayEnv>();

  const hub = createEventHub(bus, { step: deps.log.step });
  app.get("/api/v1/events", async (c) => {
    const who = c.get("who");
    const taskId = c.req.query("task");
    if (taskId) await loadTask(kv, taskId, who);
    const topics = new Set((c.req.query("topics") ?? "tasks,nodes").split(","));
    const unknown = [...topics].find((t) => t !== "tasks" && t !== "nodes");
    if (unknown !== undefined) {
      throw new ValidationError(
        `Cannot read query parameter 'topics' as '${shown(unknown)}' is not a topic: give tasks, nodes or both`,
        { code: "invalid_parameter" },
      );
    }
    const res = eventStream(hub, { who, tasks: topics.has("tasks"), nodes: topics.has("nodes"), taskId }, {
      signal: deps.signal,
    });
    return new Response(untilRevoked(res.body!, deps.tokens, c.req.header("authorization")), res);
  });

  return app;
}
