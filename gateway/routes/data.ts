/**
 * Routes for data sets: list, read, upload (a tar or one file, streamed:
 * nothing is held whole in memory), share and delete.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { ValidationError } from "../../core/errors.ts";
import { caller } from "../access.ts";
import { requireRole } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { clientAddress } from "../guard.ts";
import { canonicalWhole, flagQuery, readJson } from "../params.ts";
import type { TokenRecord } from "../../core/schema.ts";

/** Where data sets are uploaded (`POST` + the name): the gateway gives these bodies a limit of their own. */
export const DATA_SET_PATH = "/api/v1/data/";

/** The header in which a client declares the bytes of file content it uploads. */
export const UPLOAD_BYTES_HEADER = "parallelic-upload-bytes";

const Sharing = z.object({ shared: z.boolean() });

/** The `/api/v1/data` routes. */
export function dataRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { data, audit } = deps;
  const app = new Hono<GatewayEnv>();

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

  return app;
}
