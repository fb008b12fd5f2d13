/**
 * The web UI (its pages in `gateway/ui/pages.ts`, its scripts in
 * `gateway/ui/static/`): pages at `/signin`, `/submit`, `/tasks`, `/tasks/{id}`,
 * `/nodes`, `/nodes/{name}`, `/data` and, for admins, `/admin/users`,
 * `/admin/audit` and `/admin/join-token`, and their scripts and style under
 * `/ui/`. Same origin and same tokens as the API.
 *
 * The browser scripts are plain JavaScript modules, served as they are (no
 * build step); zip.js comes from its npm package, and the ignore rules from
 * `core/ignore.js` (with `core/glob.js`, which it imports), which the CLI uses too.
 *
 * @module
 */
import { type Context, Hono } from "hono";
import zipJs from "@zip.js/zip.js/dist/zip-core-external.min.js" with { type: "text" };
import globJs from "../../core/glob.js" with { type: "text" };
import sseJs from "../../core/sse.js" with { type: "text" };
import ignoreJs from "../../core/ignore.js" with { type: "text" };
import type { GatewayEnv } from "../context.ts";
import { type PageName, renderPage } from "../ui/pages.ts";
import adminJs from "../ui/static/admin.js" with { type: "text" };
import appCss from "../ui/static/app.css" with { type: "text" };
import auditJs from "../ui/static/audit.js" with { type: "text" };
import chartJs from "../ui/static/chart.js" with { type: "text" };
import joinTokenJs from "../ui/static/join-token.js" with { type: "text" };
import commonJs from "../ui/static/common.js" with { type: "text" };
import dataJs from "../ui/static/data.js" with { type: "text" };
import failuresJs from "../ui/static/failures.js" with { type: "text" };
import finalizeJs from "../ui/static/finalize.js" with { type: "text" };
import gridJs from "../ui/static/grid.js" with { type: "text" };
import logviewJs from "../ui/static/logview.js" with { type: "text" };
import nodeJs from "../ui/static/node.js" with { type: "text" };
import nodesJs from "../ui/static/nodes.js" with { type: "text" };
import notifyJs from "../ui/static/notify.js" with { type: "text" };
import outputsJs from "../ui/static/outputs.js" with { type: "text" };
import previewJs from "../ui/static/preview.js" with { type: "text" };
import relatedJs from "../ui/static/related.js" with { type: "text" };
import signinJs from "../ui/static/signin.js" with { type: "text" };
import submitJs from "../ui/static/submit.js" with { type: "text" };
import taskJs from "../ui/static/task.js" with { type: "text" };
import tasksJs from "../ui/static/tasks.js" with { type: "text" };
import usersJs from "../ui/static/users.js" with { type: "text" };

const JS = "text/javascript; charset=utf-8";

/** Files served under `/ui/`, by name. */
const ASSETS: Record<string, { type: string; body: string }> = {
  "admin.js": { type: JS, body: adminJs },
  "app.css": { type: "text/css; charset=utf-8", body: appCss },
  "audit.js": { type: JS, body: auditJs },
  "chart.js": { type: JS, body: chartJs },
  "join-token.js": { type: JS, body: joinTokenJs },
  "common.js": { type: JS, body: commonJs },
  "data.js": { type: JS, body: dataJs },
  "failures.js": { type: JS, body: failuresJs },
  "finalize.js": { type: JS, body: finalizeJs },
  "grid.js": { type: JS, body: gridJs },
  "logview.js": { type: JS, body: logviewJs },
  "node.js": { type: JS, body: nodeJs },
  "nodes.js": { type: JS, body: nodesJs },
  "notify.js": { type: JS, body: notifyJs },
  "outputs.js": { type: JS, body: outputsJs },
  "preview.js": { type: JS, body: previewJs },
  "related.js": { type: JS, body: relatedJs },
  "signin.js": { type: JS, body: signinJs },
  "submit.js": { type: JS, body: submitJs },
  "task.js": { type: JS, body: taskJs },
  "tasks.js": { type: JS, body: tasksJs },
  "users.js": { type: JS, body: usersJs },
  "glob.js": { type: JS, body: globJs },
  "ignore.js": { type: JS, body: ignoreJs },
  "sse.js": { type: JS, body: sseJs },
  "vendor/zip.js": { type: JS, body: zipJs },
};

/** Every page and asset comes only from this origin; nothing may frame the UI. */
const SECURITY_HEADERS: Record<string, string> = {
  "content-security-policy": "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; " +
    "form-action 'self'; frame-ancestors 'none'",
  "x-content-type-options": "nosniff",
  "referrer-policy": "no-referrer",
};

async function etagOf(body: string): Promise<string> {
  const hash = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(body));
  return `"${Array.from(new Uint8Array(hash).slice(0, 12), (b) => b.toString(16).padStart(2, "0")).join("")}"`;
}

/** The UI's pages and assets. */
export function uiRoutes(): Hono<GatewayEnv> {
  const app = new Hono<GatewayEnv>();
  const page = (name: PageName) => (c: Context) => {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) c.header(k, v);
    c.header("cache-control", "no-store");
    return c.html(renderPage(name, { taskId: c.req.param("id"), nodeName: c.req.param("name") }));
  };
  app.get("/", (c) => c.redirect("/tasks"));
  app.get("/signin", page("signin"));
  app.get("/submit", page("submit"));
  app.get("/tasks", page("tasks"));
  app.get("/tasks/:id", page("task"));
  app.get("/nodes", page("nodes"));
  app.get("/nodes/:name", page("node"));
  app.get("/admin", (c) => c.redirect("/admin/users"));
  app.get("/admin/users", page("users"));
  app.get("/admin/audit", page("audit"));
  app.get("/admin/join-token", page("join-token"));
  app.get("/data", page("data"));

  const etags = new Map<string, Promise<string>>();
  app.get("/ui/*", async (c) => {
    const name = c.req.path.slice("/ui/".length);
    const asset = Object.hasOwn(ASSETS, name) ? ASSETS[name] : undefined;
    if (!asset) return c.notFound();
    let etag = etags.get(name);
    if (!etag) etags.set(name, etag = etagOf(asset.body));
    const headers = { ...SECURITY_HEADERS, "content-type": asset.type, "cache-control": "no-cache", etag: await etag };
    if (c.req.header("if-none-match") === headers.etag) return c.body(null, 304, headers);
    return c.body(asset.body, 200, headers);
  });

  return app;
}
