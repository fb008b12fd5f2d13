/**
 * How the gateway answers an error: Parallelic's errors (core/errors.ts, whose
 * classes carry their status and code) as `{"error": {"code", "message"}}`
 * with that status; NATS not answering as 503; anything else as a logged 500.
 * Refusals are counted for `GET /api/v1/stats`.
 *
 * @module
 */
import type { Context, ErrorHandler, NotFoundHandler } from "hono";
import { HTTPException } from "hono/http-exception";
import { errorBody } from "../core/bus.ts";
import { ParallelicError, RateLimitError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { GatewayEnv } from "./context.ts";

/** The gateway's `onError`: `count(status)` adds a refusal to the counters. */
export function errorHandler(log: Logger, count: (status: number) => void): ErrorHandler<GatewayEnv> {
  return (err, c) => {
    if (err instanceof HTTPException) {
      count(err.status);
      return c.json({ error: { code: "http_error", message: err.message } }, err.status);
    }
    const body = errorBody(err);
    const status = err instanceof ParallelicError ? err.status : undefined;
    if (
      !status && /^(TimeoutError|NoRespondersError|RequestError|ConnectionError|ClosedConnectionError)$/.test(err.name)
    ) {
      // NATS did not answer in time (a server lost, a leader being elected): try again shortly.
      return c.json({ error: { code: "unavailable", message: `NATS did not answer: ${err.message}; try again` } }, 503);
    }
    if (!status) {
      log.error("gateway:internal-error", { path: c.req.path, error: String(err.stack ?? err) });
      return c.json({ error: { code: "internal", message: `Internal error: ${err.message}` } }, 500);
    }
    count(status);
    if (err instanceof RateLimitError) c.header("retry-after", String(Math.max(1, Math.ceil(err.retryAfterMs / 1000))));
    return c.json({ error: { code: body.code, message: body.message } }, status as 400);
  };
}

/** The answer for a path no route serves. */
export const notFound: NotFoundHandler = (c: Context) =>
  c.json({ error: { code: "not_found", message: `No route ${c.req.method} ${c.req.path}` } }, 404);
