import assert from "node:assert/strict";
import { Hono } from "hono";
import { RateLimitError } from "../core/errors.ts";
import { createLogger } from "../core/log.ts";
import type { GatewayEnv } from "./context.ts";
import { errorHandler, notFound } from "./errors.ts";

Deno.test("an error thrown in a mounted sub-app is answered by the gateway's one error handler", async () => {
  const counted: number[] = [];
  const app = new Hono<GatewayEnv>();
  app.onError(errorHandler(createLogger(), (status) => counted.push(status)));
  app.notFound(notFound);
  const sub = new Hono<GatewayEnv>();
  sub.get("/api/v1/busy", () => {
    throw new RateLimitError("Too many requests: try again in 2 s", { retryAfterMs: 1500, code: "rate_limited" });
  });
  app.route("/", sub);
  const res = await app.request("/api/v1/busy");
  assert.equal(res.status, 429);
  assert.equal(res.headers.get("retry-after"), "2");
  assert.deepEqual(await res.json(), {
    error: { code: "rate_limited", message: "Too many requests: try again in 2 s" },
  });
  assert.deepEqual(counted, [429]);
  const missing = await app.request("/api/v1/nothing");
  assert.equal(missing.status, 404);
  assert.equal((await missing.json()).error.code, "not_found");
});

Deno.test("no route module sets an error handler of its own", async () => {
  const dir = new URL("./routes/", import.meta.url);
  const own: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    if (!e.name.endsWith(".ts")) continue;
    if (/\.onError\(|\bapp\.notFound\(/.test(await Deno.readTextFile(new URL(e.name, dir)))) own.push(e.name);
  }
  assert.deepEqual(own, [], "errors are answered in gateway/errors.ts only");
});
