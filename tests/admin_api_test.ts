/**
 * The admin API the web UI's admin pages use: changing a user's role, and the
 * audit log filtered and paged.
 */
import assert from "node:assert/strict";
import { addApiUser, startTestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "admins change roles (never the last admin), audited; the audit log filters by user and action and pages",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const bobToken = await addApiUser(tm, "bob", "viewer");
    const patch = (name: string, body: unknown, token?: string) =>
      tm.api(`/api/v1/users/${name}`, { method: "PATCH", body: JSON.stringify(body), token });

    const denied = await patch("bob", { role: "admin" }, bobToken);
    assert.equal(denied.status, 403);
    assert.match((await denied.json()).error.message, /as role 'viewer' may not/);

    const up = await patch("bob", { role: "submitter" });
    assert.equal(up.status, 200);
    assert.deepEqual(await up.json(), { name: "bob", role: "submitter" });
    // The same token now carries the new role.
    assert.equal((await (await tm.api("/api/v1/whoami", { token: bobToken })).json()).role, "submitter");

    const bad = await patch("bob", { role: "root" });
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /field 'role' is invalid/);
    assert.equal((await patch("nobody", { role: "viewer" })).status, 404);
    const last = await patch("admin", { role: "viewer" });
    assert.equal(last.status, 409);
    assert.match((await last.json()).error.message, /last admin: make another admin first/);

    for (let i = 0; i < 5; i++) {
      assert.equal((await tm.api("/api/v1/users/bob/token", { method: "POST" })).status, 200);
    }
    const page = async (query: string) => {
      const res = await tm.api(`/api/v1/audit?${query}`);
      assert.equal(res.status, 200, await res.clone().text());
      return await res.json() as { entries: Array<{ action: string; user: string | null }>; next: string | null };
    };
    const roles = await page("action=user.role");
    assert.deepEqual(roles.entries.map((e) => e.action), ["user.role"]);
    const first = await page("action=token.rotate&limit=3");
    assert.equal(first.entries.length, 3);
    assert.ok(first.next);
    const second = await page(`action=token.rotate&limit=3&cursor=${encodeURIComponent(first.next!)}`);
    assert.equal(second.entries.length, 2, "five rotations in all, none twice");
    assert.equal(second.next, null);
    assert.deepEqual((await page("user=nobody")).entries, []);
    const byAdmin = await page("user=admin&limit=1000");
    assert.ok(byAdmin.entries.length >= 7 && byAdmin.entries.every((e) => e.user === "admin"));

    const wrongAction = await tm.api("/api/v1/audit?action=user.eat");
    assert.equal(wrongAction.status, 400);
    assert.match((await wrongAction.json()).error.message, /action 'user.eat' as it is not one of auth.failed/);
    const wrongCursor = await tm.api("/api/v1/audit?cursor=yesterday");
    assert.equal(wrongCursor.status, 400);
  },
});
