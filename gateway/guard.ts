/**
 * The gateway's front door for `/api/*`: a body-size cap, the caller's
 * token, a request rate per token, and the least role a method needs
 * (reads: `viewer`; anything else: `submitter`; routes that need more say
 * so with `requireRole`). A route added later is thereby closed to viewers
 * for writes without doing anything.
 *
 * Failed authentication is audited and rate limited per address, so a flood
 * of wrong tokens neither fills the audit log nor finds a token by trying.
 *
 * @module
 */
import type { Context, MiddlewareHandler } from "hono";
import type { AuditLog } from "../core/audit.ts";
import { AuthError, RateLimitError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import type { TokenRecord } from "../core/schema.ts";
import { bearerToken, requireRole, type TokenCache, tokenHash } from "./auth.ts";
import { PEER_HEADER } from "./front_door.ts";
import { createRateLimiter, limitBody, type RateLimitOptions } from "./limits.ts";

/** A body limit of its own for the routes one method and path prefix name. */
export interface BodyCap {
  method: string;
  pathPrefix: string;
  maxBytes: number;
  /** What sets it, for the 413's message (`--max-data-size`). */
  setBy: string;
}

/** Options of {@linkcode createGuard}. */
export interface GuardOptions {
  /** Largest request body, in bytes (but where `bodyCaps` say otherwise). */
  maxBodyBytes: number;
  /** Routes whose bodies have a limit of their own (data set uploads, capped by the data service as they stream). */
  bodyCaps?: BodyCap[];
  /** Requests per token (sustained per second, and burst). */
  rate: Pick<RateLimitOptions, "perSecond" | "burst">;
  /** Failed authentications per address (sustained per second, and burst). */
  failureRate: Pick<RateLimitOptions, "perSecond" | "burst">;
}

/**
 * The caller's address: as the front door saw it (it passes it on over the
 * gateway's Unix socket, which only it can reach), or as Deno.serve saw it
 * when serving TCP itself; `unknown` in `app.request` tests.
 */
export function clientAddress(c: Context): string {
  const info = c.env as { remoteAddr?: { hostname?: string; transport?: string } } | undefined;
  if (info?.remoteAddr?.transport === "unix") return c.req.header(PEER_HEADER) ?? "unknown";
  return info?.remoteAddr?.hostname ?? "unknown";
}

/**
 * Requires the caller to be an admin (to do `what`), and returns who it is
 * and from where, as the audit log records them.
 *
 * @throws {AuthError} `forbidden` for any other role.
 */
export function requireAdmin(
  c: Context<{ Variables: { who: TokenRecord } }>,
  what: string,
): { user: string; address: string } {
  const who = c.get("who");
  requireRole(who, "admin", what);
  return { user: who.user, address: clientAddress(c) };
}

/** Creates the `/api/*` middleware; it sets `who` on the context. */
export function createGuard(
  deps: { tokens: TokenCache; audit: AuditLog; log: Logger },
  options: GuardOptions,
): MiddlewareHandler<{ Variables: { who: TokenRecord } }> {
  const { tokens, audit } = deps;
  const log = deps.log.scope({ actor: "gateway" });
  const perToken = createRateLimiter(options.rate);
  const perAddress = createRateLimiter(options.failureRate);
  const limited = (retryAfterMs: number, why: string): never => {
    throw new RateLimitError(
      `Too many requests ${why}: try again in ${Math.ceil(retryAfterMs / 1000)} s`,
      { retryAfterMs, code: "rate_limited" },
    );
  };
  return async (c, next) => {
    const address = clientAddress(c);
    let who: TokenRecord;
    try {
      who = await tokens.authenticate(c.req.header("authorization"));
    } catch (e) {
      if (!(e instanceof AuthError)) throw e;
      const d = perAddress.take(address);
      if (!d.ok) limited(d.retryAfterMs, `with a missing or wrong token from ${address}`);
      const token = bearerToken(c.req.header("authorization"));
      await audit.record({
        action: "auth.failed",
        user: null,
        address,
        target: `${c.req.method} ${c.req.path}`,
        // A prefix of the hash tells repeated attempts apart without keeping anything usable.
        detail: token ? `unknown token ${tokenHash(token).slice(0, 12)}…` : "no token",
      });
      throw e;
    }
    log.step("gateway.authenticated");
    const d = perToken.take(`${who.user}\u0000${who.createdAt}`);
    if (!d.ok) limited(d.retryAfterMs, `for user '${who.user}'`);
    const read = c.req.method === "GET" || c.req.method === "HEAD";
    requireRole(who, read ? "viewer" : "submitter", `${c.req.method} ${c.req.path}`);
    try {
      const own = options.bodyCaps?.find((b) => b.method === c.req.method && c.req.path.startsWith(b.pathPrefix));
      c.req.raw = limitBody(c.req.raw, own?.maxBytes ?? options.maxBodyBytes, own?.setBy);
    } catch (e) {
      log.warn("gateway:body-too-large", { user: who.user, path: c.req.path });
      throw e;
    }
    c.set("who", who);
    await next();
  };
}
