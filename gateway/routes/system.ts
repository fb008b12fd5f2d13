/**
 * Routes about the service itself: liveness, Prometheus metrics, the
 * OpenAPI document, limits, storage use, the audit log and the notify
 * secret (admins), and the refusal counters.
 *
 * @module
 */
import { Hono } from "hono";
import { AuditAction, auditCursorKey } from "../../core/audit.ts";
import { ValidationError } from "../../core/errors.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { requireAdmin } from "../guard.ts";
import { openApiDocument } from "../openapi.ts";
import { wholeQuery } from "../params.ts";
import { SIGNATURE_HEADER, TIMESTAMP_HEADER } from "../../core/notify.ts";

/** `/healthz`, `/metrics`, `openapi.json`, `limits`, `storage`, `audit` and `stats`. */
export function systemRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { bus, data, workspace, metrics, audit } = deps;
  const app = new Hono<GatewayEnv>();
  const storeBytes = metrics.gauge("parallelic_object_store_bytes", "Bytes held in the object store, by bucket.");

  app.get("/healthz", (c) => c.json({ ok: true }));

  app.get("/metrics", async (c) => {
    storeBytes.set(await workspace.packageBytes(), { bucket: "packages" });
    return c.text(metrics.render(), 200, { "content-type": "text/plain; version=0.0.4" });
  });

  const openapi = openApiDocument();
  app.get("/api/v1/openapi.json", (c) => c.json(openapi));

  app.get(
    "/api/v1/limits",
    (c) =>
      c.json({
        maxPackageBytes: deps.limits.maxPackageBytes,
        maxUnpackedBytes: deps.limits.maxUnpackedBytes,
        maxDataSetBytes: data.maxDataSetBytes,
        maxDataSetFiles: data.maxDataSetFiles,
      }),
  );

  app.get("/api/v1/storage", async (c) => c.json(await workspace.storage()));

  app.get("/api/v1/audit", async (c) => {
    requireAdmin(c, "read the audit log");
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 100, min: 1, max: 1000 });
    const before = c.req.query("before");
    const beforeMs = before === undefined ? undefined : wholeQuery(before, "before", { fallback: 0 });
    const cursor = c.req.query("cursor");
    if (cursor !== undefined && !auditCursorKey(cursor)) {
      throw new ValidationError(`Cannot read the audit log from cursor '${cursor.slice(0, 60)}': give a page's next`, {
        code: "invalid_cursor",
      });
    }
    const actionParam = c.req.query("action");
    const action = actionParam === undefined || actionParam === "" ? undefined : AuditAction.safeParse(actionParam);
    if (action && !action.success) {
      throw new ValidationError(
        `Cannot filter the audit log by action '${actionParam!.slice(0, 60)}' as it is not one of ` +
          AuditAction.options.join(", "),
        { code: "invalid_action" },
      );
    }
    const user = c.req.query("user") || undefined;
    return c.json(await audit.page({ limit, beforeMs, cursor, user, action: action?.data }));
  });

  // Admins alone: the secret lets its holder sign notifications receivers would take as the manager's.
  app.get("/api/v1/notify", (c) => {
    requireAdmin(c, "read the notify settings");
    const n = deps.notify;
    return c.json({
      secret: n?.secret ?? null,
      allow: n?.allow ?? [],
      publicUrl: n?.publicUrl ?? null,
      signatureHeader: SIGNATURE_HEADER,
      timestampHeader: TIMESTAMP_HEADER,
    });
  });

  app.get("/api/v1/stats", (c) => c.json({ bus: { rejected: bus.rejected }, gateway: deps.stats }));

  return app;
}
