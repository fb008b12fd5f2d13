/**
 * Routes for task workspaces. Downloads stream: nothing is held whole in
 * memory.
 *
 * @module
 */
import type { Hono } from "hono";
import type { WorkspaceActor, WorkspaceSelection } from "../actors/workspace.ts";
import { NotFoundError } from "../core/errors.ts";
import type { TaskRecord, TokenRecord } from "../core/schema.ts";
import { flagQuery, instanceIndex } from "./params.ts";

/** What the data routes need from the gateway. */
export interface DataRoutesDeps {
  workspace: WorkspaceActor;
  /** The task `id` as the caller may see it. @throws {NotFoundError} */
  getTask(id: string, who: TokenRecord): Promise<TaskRecord>;
}

type Env = { Variables: { who: TokenRecord } };

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

/** Adds the workspace routes to `app`. */
export function registerDataRoutes(app: Hono<Env>, deps: DataRoutesDeps): void {
  const { workspace, getTask } = deps;

  for (const format of ["zip", "tar"] as const) {
    app.get(`/api/v1/tasks/:id/workspace.${format}`, async (c) => {
      const task = await getTask(c.req.param("id"), c.get("who"));
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
}
