/**
 * Routes for one instance's outputs (or finalize's, as `finalize`): the
 * files with their sizes, one file streamed, and a preview of an image
 * among them, scaled down on demand and cached by the instance's attempt.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { NotFoundError, ValidationError } from "../../core/errors.ts";
import { loadTask, readInstanceRecord } from "../access.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import type { Operation } from "../openapi.ts";
import { findOutput, imageKind, listOutputs, mediaType, nameOf, outputPathQuery, OutputsView } from "../outputs.ts";
import { instanceIndex, wholeQuery } from "../params.ts";
import { createPreviewCache, makePreview, placeholderPreview } from "../preview.ts";

/** Longest side of a preview: the default, and the bounds of `?max=`. */
export const PREVIEW_PX = { fallback: 256, min: 16, max: 1024 };

/** The operations of these routes, for gateway/openapi.ts. */
export const OUTPUT_OPERATIONS: Operation[] = [
  {
    method: "get",
    path: "/api/v1/tasks/:id/instances/:index/outputs",
    operationId: "listOutputs",
    summary: "An instance's output files (index 'finalize' for finalize's) with their sizes",
    response: { status: 200, schema: OutputsView },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/instances/:index/output",
    operationId: "getOutput",
    summary: "One output file of an instance (or of finalize), streamed as an attachment",
    query: { path: z.string() },
    response: { status: 200, schema: "binary" },
  },
  {
    method: "get",
    path: "/api/v1/tasks/:id/instances/:index/preview",
    operationId: "previewOutput",
    summary: "A PNG or JPEG at most max px a side of an image output (the first, or ?path=); 404 when there is none",
    query: { max: z.number().int().min(16).max(1024), path: z.string() },
    response: { status: 200, schema: "binary" },
  },
];

/**
 * `GET /api/v1/tasks/{id}/instances/{index}/outputs`, `…/output?path=` and
 * `…/preview`. An image that cannot be previewed (broken, too large, EXR
 * with nothing here to read it) gets a placeholder image saying why, with
 * header `Parallelic-Preview: none; <why, URL-encoded>`.
 */
export function outputRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { kv, workspace } = deps;
  const app = new Hono<GatewayEnv>();
  const cache = createPreviewCache();

  app.get("/api/v1/tasks/:id/instances/:index/outputs", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    c.header("cache-control", "no-store");
    return c.json(await listOutputs(workspace, task, index));
  });

  app.get("/api/v1/tasks/:id/instances/:index/output", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    const path = outputPathQuery(c.req.query("path"));
    const file = await findOutput(workspace, task, index, path);
    const name = (path.split("/").at(-1) ?? "output").replace(/[^\w.+-]/g, "_");
    return new Response(await file.open(), {
      headers: {
        "content-type": mediaType(path),
        "content-length": String(file.size),
        // Never shown as a page of the gateway's origin, whatever it holds.
        "content-disposition": `attachment; filename="${name}"`,
        "x-content-type-options": "nosniff",
        "content-security-policy": "default-src 'none'; sandbox",
        "cache-control": "no-store",
      },
    });
  });

  app.get("/api/v1/tasks/:id/instances/:index/preview", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    const index = instanceIndex(task, c.req.param("index"));
    const maxPx = wholeQuery(c.req.query("max"), "max", PREVIEW_PX);
    const raw = c.req.query("path");
    const path = raw === undefined ? undefined : outputPathQuery(raw);
    if (path !== undefined && imageKind(path) === null) {
      throw new ValidationError(`Cannot preview '${path.slice(0, 200)}': only PNG, JPEG and EXR images have previews`, {
        code: "invalid_parameter",
      });
    }
    // A rerun stores new outputs with a new attempt: the cache and the browser's copy follow it.
    const rec = await readInstanceRecord(kv, task.id, index);
    const last = rec?.history.at(-1);
    const version = `${last?.attempt ?? "-"}.${last?.endedAt ?? "-"}`;
    const key = `${task.id}/${index}/${version}/${maxPx}/${path ?? ""}`;
    const etag = `"${version}.${maxPx}.${await digestOf(path ?? "")}"`;
    // Kept by the browser, and asked again each time whether it changed (a rerun may replace it).
    const headers = { etag, "cache-control": "private, no-cache", "x-content-type-options": "nosniff" };
    if (c.req.header("if-none-match") === etag) return new Response(null, { status: 304, headers });
    let preview = cache.get(key);
    if (!preview) {
      const file = await findOutput(workspace, task, index, path);
      const what = `'${file.path}' of the ${nameOf(task, index)}`;
      try {
        preview = await makePreview(what, imageKind(file.path)!, file.size, await file.open(), maxPx);
      } catch (e) {
        if (!(e instanceof NotFoundError) || e.code !== "preview_unavailable") throw e;
        preview = { ...placeholderPreview(e.message.replace(/^No preview of .*?: /, ""), maxPx), why: e.message };
      }
      cache.set(key, preview);
    }
    const why: Record<string, string> = preview.why === undefined
      ? {}
      : { "parallelic-preview": `none; ${encodeURIComponent(preview.why)}` };
    return new Response(preview.bytes as Uint8Array<ArrayBuffer>, {
      headers: { ...headers, ...why, "content-type": preview.type },
    });
  });

  return app;
}

async function digestOf(text: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return Array.from(new Uint8Array(hash).subarray(0, 6), (b) => b.toString(16).padStart(2, "0")).join("");
}
