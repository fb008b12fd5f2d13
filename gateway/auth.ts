/**
 * Tokens: only their SHA-256 is stored (Deno KV `["token", hash]`).
 *
 * @module
 */
import { z } from "zod";
import { tokenKey } from "../actors/keys.ts";
import { AuthError } from "../core/errors.ts";
import { randomToken, sha256Hex } from "../core/ids.ts";

/** Roles, most powerful first. */
export const Role = z.enum(["admin", "submitter", "viewer"]);
/** A role. */
export type Role = z.infer<typeof Role>;

/** `["token", hash]`: who a token belongs to. */
export const TokenRecord = z.object({ user: z.string(), role: Role, createdAt: z.number() });
/** A token record. */
export type TokenRecord = z.infer<typeof TokenRecord>;

/** Stores a token's hash for `user`. */
export async function addToken(kv: Deno.Kv, token: string, user: string, role: Role, now = Date.now()): Promise<void> {
  await kv.set(tokenKey(await sha256Hex(token)), { user, role, createdAt: now } satisfies TokenRecord);
}

/**
 * Looks up the bearer token of an `Authorization` header.
 *
 * @throws {AuthError} When it is missing or unknown (the same message for both).
 */
export async function authenticate(kv: Deno.Kv, header: string | undefined): Promise<TokenRecord> {
  const token = /^Bearer\s+(\S+)$/i.exec(header ?? "")?.[1];
  if (!token) {
    throw new AuthError("Missing token: send 'Authorization: Bearer <token>'", { code: "unauthorized" });
  }
  const entry = await kv.get<TokenRecord>(tokenKey(await sha256Hex(token)));
  if (!entry.value) throw new AuthError("Invalid token", { code: "unauthorized" });
  return entry.value;
}

/**
 * Makes sure an admin token exists: `envToken` when given (PARALLELIC_TOKEN),
 * otherwise one generated at first start and written, readable only by its
 * owner, to `tokenFile`. Returns the token when it is known here.
 */
export async function ensureAdminToken(
  kv: Deno.Kv,
  tokenFile: string,
  envToken: string | undefined,
): Promise<{ token: string | null; source: "env" | "file" | "generated" }> {
  if (envToken) {
    await addToken(kv, envToken, "admin", "admin");
    return { token: envToken, source: "env" };
  }
  try {
    const token = (await Deno.readTextFile(tokenFile)).trim();
    const known = await kv.get(tokenKey(await sha256Hex(token)));
    if (known.value) return { token, source: "file" };
  } catch { /* first start */ }
  const token = randomToken();
  await addToken(kv, token, "admin", "admin");
  await Deno.writeTextFile(tokenFile, token + "\n", { mode: 0o600 });
  await Deno.chmod(tokenFile, 0o600);
  return { token, source: "generated" };
}
