/**
 * Routes for a task's workspace: its outputs (and logs), whole or of one
 * instance or of finalize, as a zip or a tar. Downloads stream: nothing is
 * held whole in memory.
 *
 * @module
 */
import { Hono } from "hono";
import type { WorkspaceSelection } from "../../services/workspace.ts";
import { NotFoundError } from "../../core/errors.ts";
import type { TaskRecord } from "../../core/schema.ts";
import { loadTask } from "../access.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { flagQuery, instanceIndex } from "../params.ts";

function selection(task: TaskRecord, query: (k: string) => string | undefined): WorkspaceSelection {
  const instance = query("instance");
  const finalize = flagQuery(query("finalize"), "finalize");
  if (finalize) {
    if (!task.spec.finalize) {
      throw new NotFoundError(`Task '${task.id}' has no [finalize] step`, { code: "no_finalize" });
    }
    return { finalize: true };
  }
  if (instance === undefined) return {};
  const index = instanceIndex(task, instance);
  // `instance=finalize` is the [finalize] run, as in the instance routes.
  return index === task.spec.instances ? { finalize: true } : { instance: index };
}

/** `GET /api/v1/tasks/{id}/workspace.zip` and `.tar`. */
export function workspaceRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { kv, workspace } = deps;
  const app = new Hono<GatewayEnv>();

  for (const format of ["zip", "tar"] as const) {
    app.get(`/api/v1/tasks/:id/workspace.${format}`, async (c) => {
      const task = await loadTask(kv, c.req.param("id"), c.get("who"));
      const pick = selection(task, (k) => c.req.query(k));
      const suffix = pick.finalize ? "-finalize" : pick.instance !== undefined ? `-${pick.instance}` : "";
      const stream = format === "zip" ? workspace.zip(task, pick) : workspace.tar(task, pick);
      return new Response(stream, {
        headers: {
          "content-type": format === "zip" ? "application/zip" : "application/x-tar",
          "content-disposition": `attachment; filename="${task.id}${suffix}.${format}"`,
          "cache-control": "no-store",
        },
      });
    });
  }

  return app;
}
