/**
 * Users, roles and tokens. A token is shown once, when it is made; only its
 * SHA-256 is stored (Deno KV `["token", hash]` → who, `["user", name]` →
 * the user and the hash of their current token).
 *
 * Roles: `admin` (everything), `submitter` (submit; see, follow and cancel
 * only their own tasks), `viewer` (read only).
 *
 * @module
 */
import { tokenKey, userKey, USERS } from "../core/kv.ts";
import { AuthError, ConflictError, NotFoundError, ValidationError } from "../core/errors.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import { randomToken, sha256Hex } from "../core/ids.ts";
import { type Role, type TokenRecord, UserName, type UserRecord, type UserView } from "../core/schema.ts";

const RANK: Record<Role, number> = { viewer: 0, submitter: 1, admin: 2 };

/**
 * Throws unless `who` has at least `role`.
 *
 * @throws {AuthError} `forbidden` (HTTP 403), naming the role needed.
 */
export function requireRole(who: TokenRecord, role: Role, what: string): void {
  if (RANK[who.role] < RANK[role]) {
    throw new AuthError(`Cannot ${what} as role '${who.role}' may not: it needs '${role}'`, { code: "forbidden" });
  }
}

/** The hash a token is stored under. */
export const tokenHash = (token: string) => sha256Hex(token);

function userName(name: string): string {
  const parsed = UserName.safeParse(name);
  if (!parsed.success) {
    throw new ValidationError(`Cannot use user name '${name}' as ${parsed.error.issues[0].message}`, {
      code: "invalid_user_name",
    });
  }
  return parsed.data;
}

/** Options of the functions that change users and tokens. */
export interface UserChangeOptions {
  /** The time of the change. @default {Date.now()} */
  now?: number;
  /** A cache of token lookups, cleared once the change is stored (the gateway's guard passes its own). */
  tokens?: TokenCache;
}

/**
 * Sets `name`'s token to `token` (creating the user with `role` when new),
 * dropping the hash of the token they had. `expectNew` refuses an existing user.
 */
async function setToken(
  kv: Deno.Kv,
  name: string,
  role: Role | undefined,
  token: string,
  expectNew: boolean,
  { now = Date.now(), tokens }: UserChangeOptions = {},
): Promise<UserRecord> {
  const hash = tokenHash(token);
  for (;;) {
    const entry = await kv.get<UserRecord>(userKey(name));
    if (entry.value && expectNew) {
      throw new ConflictError(`Cannot add user '${name}' as it exists: remove it first, or rotate its token`, {
        code: "user_exists",
      });
    }
    if (!entry.value && !role) {
      throw new NotFoundError(`User '${name}' does not exist`, { code: "user_not_found" });
    }
    const rec: UserRecord = {
      name,
      role: role ?? entry.value!.role,
      createdAt: entry.value?.createdAt ?? now,
      tokenHash: hash,
      tokenCreatedAt: now,
    };
    const op = kv.atomic().check(entry).set(userKey(name), rec)
      .set(tokenKey(hash), { user: name, role: rec.role, createdAt: now } satisfies TokenRecord);
    if (entry.value && entry.value.tokenHash !== hash) op.delete(tokenKey(entry.value.tokenHash));
    if ((await op.commit()).ok) {
      tokens?.clear();
      return rec;
    }
  }
}

/**
 * Adds a user with a new token; returns the token (shown once, never stored).
 *
 * @throws {ConflictError} When the user exists.
 * @throws {ValidationError} When the name is not a valid user name.
 */
export async function addUser(kv: Deno.Kv, name: string, role: Role, options?: UserChangeOptions): Promise<string> {
  const token = randomToken();
  await setToken(kv, userName(name), role, token, true, options);
  return token;
}

/**
 * Gives `name` a new token, which replaces the old one at once; returns it.
 *
 * @throws {NotFoundError} When there is no such user.
 */
export async function rotateToken(kv: Deno.Kv, name: string, options?: UserChangeOptions): Promise<string> {
  const token = randomToken();
  await setToken(kv, userName(name), undefined, token, false, options);
  return token;
}

/**
 * Removes a user and their token.
 *
 * @throws {NotFoundError} When there is no such user.
 * @throws {ConflictError} When it is the last admin.
 */
export async function removeUser(kv: Deno.Kv, name: string, options: UserChangeOptions = {}): Promise<void> {
  const entry = await kv.get<UserRecord>(userKey(name));
  if (!entry.value) {
    throw new NotFoundError(`Cannot remove user '${name}' as it does not exist`, { code: "user_not_found" });
  }
  if (entry.value.role === "admin") {
    const admins = (await listUsers(kv)).filter((u) => u.role === "admin");
    if (admins.length <= 1) {
      throw new ConflictError(`Cannot remove user '${name}' as it is the last admin`, { code: "last_admin" });
    }
  }
  const res = await kv.atomic().check(entry).delete(userKey(name)).delete(tokenKey(entry.value.tokenHash)).commit();
  if (!res.ok) throw new ConflictError(`Cannot remove user '${name}' as it changed meanwhile: try again`);
  options.tokens?.clear();
}

/**
 * Gives `name` another role; their token stays and carries the new role at once.
 *
 * @throws {NotFoundError} When there is no such user.
 * @throws {ConflictError} When it would leave no admin.
 */
export async function setRole(kv: Deno.Kv, name: string, role: Role, options: UserChangeOptions = {}): Promise<void> {
  for (;;) {
    const entry = await kv.get<UserRecord>(userKey(userName(name)));
    if (!entry.value) {
      throw new NotFoundError(`Cannot change the role of user '${name}' as it does not exist`, {
        code: "user_not_found",
      });
    }
    if (entry.value.role === role) return;
    if (entry.value.role === "admin") {
      const admins = (await listUsers(kv)).filter((u) => u.role === "admin");
      if (admins.length <= 1) {
        throw new ConflictError(
          `Cannot make user '${name}' a ${role} as it is the last admin: make another admin first`,
          {
            code: "last_admin",
          },
        );
      }
    }
    const token = await kv.get<TokenRecord>(tokenKey(entry.value.tokenHash));
    const op = kv.atomic().check(entry, token).set(userKey(name), { ...entry.value, role });
    if (token.value) op.set(tokenKey(entry.value.tokenHash), { ...token.value, role });
    if ((await op.commit()).ok) {
      options.tokens?.clear();
      return;
    }
  }
}

/** Every user, by name. */
export async function listUsers(kv: Deno.Kv): Promise<UserView[]> {
  const out: UserView[] = [];
  for await (const e of kv.list<UserRecord>({ prefix: USERS })) {
    const { tokenHash: _, ...view } = e.value;
    out.push(view);
  }
  return out;
}

/** Stores a token's hash for `user` without a user record (kept for callers of the first version). */
export async function addToken(kv: Deno.Kv, token: string, user: string, role: Role, now = Date.now()): Promise<void> {
  await kv.set(tokenKey(tokenHash(token)), { user, role, createdAt: now } satisfies TokenRecord);
}

/** The bearer token of an `Authorization` header, if there is one. */
export function bearerToken(header: string | undefined): string | null {
  return /^Bearer\s+(\S+)$/i.exec(header ?? "")?.[1] ?? null;
}

/** Looks tokens up, remembering what it found for a moment. */
export interface TokenCache {
  /**
   * Looks up the bearer token of an `Authorization` header. A token found
   * within the last `ttlMs` is answered from memory (a Deno KV read cost about a quarter of a
   * millisecond of every request). Unknown tokens are never remembered.
   *
   * @throws {AuthError} When the token is missing or unknown.
   */
  authenticate(header: string | undefined): Promise<TokenRecord>;
  /** Forgets every token: called after users or tokens change (add, remove, rotate). */
  clear(): void;
  /**
   * Calls `onRevoked` once when the bearer token of `header` stops being
   * valid (rotated or its user removed): at once when the change is made
   * through this cache's {@linkcode TokenCache.clear}, otherwise within
   * `revokeCheckMs` (another process writing the same Deno KV). Returns the
   * function that stops watching.
   */
  watch(header: string | undefined, onRevoked: () => void): () => void;
}

/** Options of {@linkcode createTokenCache}. */
export interface TokenCacheOptions {
  /** How long a found token is trusted without reading Deno KV again. @default {1000} */
  ttlMs?: number;
  /** Tokens remembered at most (the oldest go first). @default {1000} */
  maxEntries?: number;
  /** Time. @default {systemClock} */
  clock?: Clock;
  /** How often watched tokens (open streams) are looked up again. @default {500} */
  revokeCheckMs?: number;
}

/**
 * Creates a {@linkcode TokenCache} over `kv`. A token removed or rotated
 * through this manager's API stops working at once (the routes clear the
 * cache); one changed by another process writing the same Deno KV works for
 * at most `ttlMs` more.
 */
export function createTokenCache(kv: Deno.Kv, options: TokenCacheOptions = {}): TokenCache {
  const ttlMs = options.ttlMs ?? 1000;
  const maxEntries = options.maxEntries ?? 1000;
  const clock = options.clock ?? systemClock;
  // Keyed by the token's hash, as in Deno KV: the cache holds no token itself.
  const found = new Map<string, { who: TokenRecord; untilMs: number }>();
  // Bumped by clear(): a lookup that was reading Deno KV while the cache was cleared does not store what it read.
  let epoch = 0;
  const watched = createWatchers(kv, options.revokeCheckMs ?? 500);
  return {
    watch(header, onRevoked) {
      const token = bearerToken(header);
      return token ? watched.add(tokenHash(token), onRevoked) : () => {};
    },
    async authenticate(header) {
      const token = bearerToken(header);
      if (!token) {
        throw new AuthError("Missing token: send 'Authorization: Bearer <token>'", { code: "unauthorized" });
      }
      const hash = tokenHash(token);
      const now = clock.now();
      const hit = found.get(hash);
      if (hit && hit.untilMs > now) return hit.who;
      const started = epoch;
      const who = (await kv.get<TokenRecord>(tokenKey(hash))).value;
      if (!who) {
        found.delete(hash);
        throw new AuthError("Invalid token", { code: "unauthorized" });
      }
      if (started === epoch) {
        found.delete(hash);
        found.set(hash, { who, untilMs: clock.now() + ttlMs });
        if (found.size > maxEntries) found.delete(found.keys().next().value!);
      }
      return who;
    },
    clear() {
      epoch++;
      found.clear();
      watched.check();
    },
  };
}

/**
 * Token hashes watched by open streams, looked up again every `everyMs`
 * (ten per Deno KV read) while any are watched, and whenever `check` is called.
 */
function createWatchers(kv: Deno.Kv, everyMs: number) {
  const byHash = new Map<string, Set<() => void>>();
  let timer: ReturnType<typeof setInterval> | undefined;
  let checking: Promise<void> | null = null;
  let again = false;
  const revoke = (hash: string) => {
    const listeners = byHash.get(hash);
    byHash.delete(hash);
    for (const fn of listeners ?? []) fn();
  };
  const lookUp = async () => {
    const hashes = [...byHash.keys()];
    for (let i = 0; i < hashes.length; i += 10) {
      const batch = hashes.slice(i, i + 10);
      const entries = await kv.getMany(batch.map((h) => tokenKey(h)));
      entries.forEach((e, j) => e.value === null && revoke(batch[j]));
    }
  };
  const check = () => {
    // One look-up at a time; a change made during one is looked at right after it.
    if (checking) return void (again = true);
    checking = lookUp().catch(() => {}).finally(() => {
      checking = null;
      if (again) (again = false, check());
    });
  };
  const stopTimer = () => {
    if (byHash.size === 0 && timer !== undefined) clearInterval(timer), timer = undefined;
  };
  return {
    check,
    add(hash: string, onRevoked: () => void): () => void {
      let listeners = byHash.get(hash);
      if (!listeners) byHash.set(hash, listeners = new Set());
      const once = () => onRevoked();
      listeners.add(once);
      if (timer === undefined) {
        const t = timer = setInterval(check, everyMs);
        Deno.unrefTimer(t);
      }
      return () => {
        const set = byHash.get(hash);
        if (set?.delete(once) && set.size === 0) byHash.delete(hash);
        stopTimer();
      };
    },
  };
}

/**
 * Passes `body` through until the bearer token of `header` is revoked, then
 * ends it (and cancels `body`): an event stream or a log follow opened with
 * a token that was rotated or removed ends then, not when the client leaves.
 */
export function untilRevoked(
  body: ReadableStream<Uint8Array>,
  tokens: TokenCache,
  header: string | undefined,
): ReadableStream<Uint8Array> {
  const reader = body.getReader();
  let unwatch = () => {};
  return new ReadableStream<Uint8Array>({
    start(controller) {
      unwatch = tokens.watch(header, () => {
        unwatch();
        try {
          controller.close();
        } catch { /* already closed */ }
        reader.cancel("token revoked").catch(() => {});
      });
    },
    async pull(controller) {
      const next = await reader.read().catch((e) => (unwatch(), Promise.reject(e)));
      if (!next.done) return controller.enqueue(next.value);
      unwatch();
      try {
        controller.close();
      } catch { /* closed on revocation */ }
    },
    cancel(reason) {
      unwatch();
      return reader.cancel(reason);
    },
  });
}

/**
 * Makes sure the user `admin` exists with a known token: `envToken` when
 * given (PARALLELIC_TOKEN; it replaces the admin's previous token), otherwise
 * the one in `tokenFile`, otherwise a new one written, readable only by its
 * owner, to `tokenFile`. Returns the token when it is known here.
 */
export async function ensureAdminToken(
  kv: Deno.Kv,
  tokenFile: string,
  envToken: string | undefined,
): Promise<{ token: string | null; source: "env" | "file" | "generated" | "rotated" }> {
  const now = Date.now();
  if (envToken) {
    await setToken(kv, "admin", "admin", envToken, false, { now });
    return { token: envToken, source: "env" };
  }
  const admin = (await kv.get<UserRecord>(userKey("admin"))).value;
  try {
    const token = (await Deno.readTextFile(tokenFile)).trim();
    const known = (await kv.get<TokenRecord>(tokenKey(tokenHash(token)))).value;
    if (known?.user === "admin") {
      if (!admin) await setToken(kv, "admin", "admin", token, false, { now });
      return { token, source: "file" };
    }
  } catch { /* first start */ }
  // The admin's token was rotated through the API since the file was written: keep it.
  if (admin) return { token: null, source: "rotated" };
  const token = randomToken();
  await setToken(kv, "admin", "admin", token, false, { now });
  await Deno.writeTextFile(tokenFile, token + "\n", { mode: 0o600 });
  await Deno.chmod(tokenFile, 0o600);
  return { token, source: "generated" };
}
