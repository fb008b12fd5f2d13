import assert from "node:assert/strict";
import { createLogger } from "../core/log.ts";
import { makeZip, startTestManager } from "../tests/kit/mod.ts";
import { createGateway } from "./app.ts";
import { OPERATIONS } from "./openapi.ts";

Deno.test("every API route of the gateway is in the OpenAPI document, and every operation there is served", () => {
  const app = createGateway({
    bus: {} as never,
    kv: {} as never,
    workspace: {} as never,
    data: {} as never,
    log: createLogger(),
  });
  const documented = new Set(OPERATIONS.map((o) => `${o.method.toUpperCase()} ${o.path}`));
  const routes = app.routes
    .filter((r) => r.method !== "ALL" && (r.path.startsWith("/api/") || r.path === "/healthz" || r.path === "/metrics"))
    .map((r) => `${r.method} ${r.path}`);
  assert.ok(routes.length > 10);
  for (const route of routes) assert.ok(documented.has(route), `${route} is missing from gateway/openapi.ts`);
  const served = new Set(routes);
  for (const op of documented) assert.ok(served.has(op), `${op} is in gateway/openapi.ts but no route serves it`);
});

/** A client made from the document at run time: finds operations by id and fills in their paths. */
function clientFrom(
  doc: { paths: Record<string, Record<string, { operationId: string }>> },
  base: string,
  token: string,
) {
  const ops = new Map<string, { method: string; path: string }>();
  for (const [path, methods] of Object.entries(doc.paths)) {
    for (const [method, op] of Object.entries(methods)) ops.set(op.operationId, { method, path });
  }
  return (operationId: string, params: Record<string, string> = {}, body?: BodyInit, type?: string) => {
    const op = ops.get(operationId);
    if (!op) throw new Error(`no operation ${operationId}`);
    const path = op.path.replace(/\{(\w+)\}/g, (_, k) => encodeURIComponent(params[k]));
    return fetch(`${base}${path}`, {
      method: op.method.toUpperCase(),
      body,
      headers: { authorization: `Bearer ${token}`, ...(type ? { "content-type": type } : {}) },
    });
  };
}

Deno.test({
  name: "a client made from /api/v1/openapi.json submits a task and reads it back",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    const doc = await (await tm.api("/api/v1/openapi.json")).json();
    assert.equal(doc.openapi, "3.1.0");
    const paths = doc.paths["/api/v1/tasks"].post;
    assert.equal(paths.responses["201"].content["application/json"].schema.properties.id.type, "string");
    const call = clientFrom(doc, tm.manager.url, tm.token);
    const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\ninstances = 3\n`, "r.sh": "#!/bin/sh\n" });
    const res = await call("submitTask", {}, zip as Uint8Array<ArrayBuffer>, "application/zip");
    assert.equal(res.status, 201);
    const { id } = await res.json();
    const done = await tm.waitForTask(id);
    assert.equal(done.state, "succeeded");
    const inst = await (await call("getInstance", { id, index: "2" })).json();
    assert.equal(inst.state, "succeeded");
  },
});
