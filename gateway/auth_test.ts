import assert from "node:assert/strict";
import { ManualClock } from "../core/clock.ts";
import { kvWith, tempKv } from "../tests/kit/mod.ts";
import { addToken, addUser, createTokenCache, rotateToken } from "./auth.ts";

const withKv = async (fn: (kv: Deno.Kv) => Promise<void>) => {
  await using temp = await tempKv();
  await fn(temp.kv);
};
const bearer = (token: string) => `Bearer ${token}`;

Deno.test("createTokenCache() trusts a found token for ttlMs, until cleared, and never remembers an unknown one", async () => {
  await withKv(async (kv) => {
    const clock = new ManualClock(1_000_000);
    const tokens = createTokenCache(kv, { ttlMs: 1000, clock });
    const old = await addUser(kv, "alice", "submitter");
    assert.equal((await tokens.authenticate(bearer(old))).user, "alice");
    // Rotated behind the cache's back (as another process writing the same Deno KV would): trusted for ttlMs.
    const fresh = await rotateToken(kv, "alice");
    assert.equal((await tokens.authenticate(bearer(old))).user, "alice", "remembered within ttlMs");
    clock.advance(1001);
    await assert.rejects(tokens.authenticate(bearer(old)), /Invalid token/);
    // The new token was unknown before it was read; it works at once.
    assert.equal((await tokens.authenticate(bearer(fresh))).role, "submitter");
    // Through the API the routes clear the cache: the old token is dead at once.
    const newest = await rotateToken(kv, "alice", { tokens });
    await assert.rejects(tokens.authenticate(bearer(fresh)), /Invalid token/);
    assert.equal((await tokens.authenticate(bearer(newest))).user, "alice");
    await assert.rejects(tokens.authenticate(undefined), /Missing token/);
    // A refused token is not remembered as refused: once stored it works.
    await assert.rejects(tokens.authenticate(bearer("later-token")), /Invalid token/);
    await addToken(kv, "later-token", "bob", "viewer");
    assert.equal((await tokens.authenticate(bearer("later-token"))).user, "bob");
  });
});

Deno.test("createTokenCache() keeps at most maxEntries tokens", async () => {
  await withKv(async (kv) => {
    const clock = new ManualClock(0);
    const tokens = createTokenCache(kv, { ttlMs: 60_000, maxEntries: 2, clock });
    const a = await addUser(kv, "a", "viewer");
    const b = await addUser(kv, "b", "viewer");
    const c = await addUser(kv, "c", "viewer");
    for (const t of [a, b, c]) await tokens.authenticate(bearer(t));
    // Rotated behind the cache's back: `a` was dropped to make room, so its old token is read again and refused.
    await rotateToken(kv, "a");
    await rotateToken(kv, "c");
    await assert.rejects(tokens.authenticate(bearer(a)), /Invalid token/);
    assert.equal((await tokens.authenticate(bearer(c))).user, "c", "the newest is still remembered");
  });
});

Deno.test("createTokenCache() does not keep what a lookup read while the cache was being cleared", async () => {
  await withKv(async (kv) => {
    // Deno KV whose next get waits until released: the clear() lands while the lookup reads.
    let release: (() => void) | undefined;
    const slow = kvWith(kv, {
      get: (async (key: Deno.KvKey) => {
        await new Promise<void>((r) => release = r);
        return await kv.get(key);
      }) as Deno.Kv["get"],
    });
    const tokens = createTokenCache(slow, { ttlMs: 60_000, clock: new ManualClock(0) });
    const old = await addUser(kv, "alice", "submitter");
    const lookup = tokens.authenticate(bearer(old));
    await new Promise((r) => setTimeout(r, 10));
    tokens.clear();
    // Read before the rotation below, answered after the clear.
    release!();
    assert.equal((await lookup).user, "alice");
    await rotateToken(kv, "alice");
    const next = tokens.authenticate(bearer(old));
    await new Promise((r) => setTimeout(r, 10));
    release!();
    await assert.rejects(next, /Invalid token/, "read again, not taken from the cache");
  });
});
