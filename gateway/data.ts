/**
 * Routes for shared data sets, task workspaces, deleting tasks, storage use
 * and limits. Uploads and downloads stream: nothing is held whole in memory.
 *
 * @module
 */
import type { Hono } from "hono";
import { z } from "zod";
import type { DataActor } from "../actors/data.ts";
import type { DataCaller } from "../actors/data_access.ts";
import type { WorkspaceActor, WorkspaceSelection } from "../actors/workspace.ts";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import type { PackageLimits } from "../core/package.ts";
import type { TaskRecord, TokenRecord } from "../core/schema.ts";
import type { AuditLog } from "../core/audit.ts";
import { requireRole } from "./auth.ts";
import { clientAddress } from "./guard.ts";
import { canonicalWhole, flagQuery, instanceIndex, readJson } from "./params.ts";

/** Where data sets are uploaded (`POST` + the name): the gateway gives these bodies a limit of their own. */
export const DATA_SET_PATH = "/api/v1/data/";
/** What the data routes need from the gateway. */
export interface DataRoutesDeps {
  data: DataService;
  workspace: WorkspaceService;
  limits: PackageLimits;
  /** Records deletions. */
  audit: AuditLog;
  /** The task `id` as the caller may see it. @throws {NotFoundError} */
  getTask(id: string, who: TokenRecord): Promise<TaskRecord>;
}

type Env = { Variables: { who: TokenRecord } };

/** The header in which a client declares the bytes of file content it uploads. */
export const UPLOAD_BYTES_HEADER = "parallelic-upload-bytes";

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

/** The caller as the data service knows callers. */
export const caller = (who: TokenRecord): DataCaller => ({ user: who.user, admin: who.role === "admin" });

const Sharing = z.object({ shared: z.boolean() });

/** Adds the data, workspace and storage routes to `app`. */
export function registerDataRoutes(app: Hono<Env>, deps: DataRoutesDeps): void {
  const { data, workspace, audit, getTask } = deps;

  app.get("/api/v1/data", async (c) => c.json({ datasets: await data.list(caller(c.get("who"))) }));

  app.get("/api/v1/data/:name", async (c) => c.json(await data.get(c.req.param("name"), caller(c.get("who")))));

  app.patch("/api/v1/data/:name", async (c) => {
    const who = c.get("who");
    const { shared } = await readJson(c, Sharing);
    const view = await data.share(c.req.param("name"), shared, caller(who));
    await audit.record({
      action: "data.share",
      user: who.user,
      address: clientAddress(c),
      target: view.name,
      detail: shared ? "shared" : "not shared",
    });
    return c.json(view);
  });

  app.post(`${DATA_SET_PATH}:name`, async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "upload a data set");
    const type = c.req.header("content-type") ?? "";
    const file = c.req.query("file");
    const sharedParam = c.req.query("shared");
    const shared = sharedParam === undefined ? undefined : flagQuery(sharedParam, "shared");
    const isTar = type.startsWith("application/x-tar") || type.startsWith("application/tar");
    if (!isTar && !file) {
      throw new ValidationError(
        `Cannot accept data set upload of type '${type}': send a tar (application/x-tar), or one file with ?file=NAME`,
        { code: "unsupported_media_type" },
      );
    }
    const declaredHeader = c.req.header(UPLOAD_BYTES_HEADER) ?? (isTar ? undefined : c.req.header("content-length"));
    const declaredBytes = declaredHeader === undefined ? undefined : canonicalWhole(declaredHeader);
    if (declaredBytes === null) {
      throw new ValidationError(`Header '${UPLOAD_BYTES_HEADER}' must be a byte count: got '${declaredHeader}'`);
    }
    const body = c.req.raw.body;
    if (!body) {
      throw new ValidationError("Cannot accept data set upload as the request has no body", { code: "empty_body" });
    }
    const { record, created } = await data.put(c.req.param("name"), body, {
      format: isTar ? { kind: "tar" } : { kind: "file", path: file! },
      owner: who.user,
      admin: who.role === "admin",
      shared,
      declaredBytes,
    });
    return c.json({ ...record, created }, created ? 201 : 200);
  });

  const remove = (who: TokenRecord, name: string, version?: string) => {
    requireRole(who, "submitter", "delete a data set");
    return data.remove(name, version, caller(who));
  };

  app.delete("/api/v1/data/:name", async (c) => c.json(await remove(c.get("who"), c.req.param("name"))));

  app.delete(
    "/api/v1/data/:name/:version",
    async (c) => c.json(await remove(c.get("who"), c.req.param("name"), c.req.param("version"))),
  );

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

  app.delete("/api/v1/tasks/:id", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "delete a task");
    const task = await getTask(c.req.param("id"), who);
    const { freedBytes } = await workspace.deleteTask(task);
    await audit.record({
      action: "task.delete",
      user: who.user,
      address: clientAddress(c),
      target: task.id,
      detail: `${freedBytes} bytes freed`,
    });
    return c.json({ id: task.id, deleted: true, freedBytes });
  });
}
