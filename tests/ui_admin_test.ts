/**
 * The admin pages end to end in headless Chromium: users (add with the
 * token shown once, change a role, rotate a token, remove), the audit log
 * (filter by user and action, paging) and the join token (masked, revealed,
 * rotated); anyone but an admin gets a plain 403 page and no admin link.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { addApiUser } from "./kit/mod.ts";
import { docShot, opts, shoot, signIn, watchedPage, withUi } from "./kit/ui.ts";

/** Signs `page` in with `token` (any user), landing on `path`. */
async function signInAs(page: Page, base: string, token: string, path: string, label: string): Promise<void> {
  await page.goto(`${base}/signin?next=${encodeURIComponent(path)}`);
  await page.getByLabel("Access token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL(`${base}${path}`);
  await page.locator("#who").getByText(label).waitFor();
}

Deno.test({
  name: "web UI: admins manage users, tokens, the audit log and the join token; others get a 403 page",
  ...opts,
  fn: (t) =>
    withUi(0, async ({ tm, base, browser, errors }) => {
      const page = await watchedPage(browser, errors);
      await signIn(page, base, "/admin/users");
      const whoami = async (token: string) => await tm.api("/api/v1/whoami", { token });
      let carolToken = "";

      await t.step("add a user: the token is shown once, with a copy button and a warning", async () => {
        assert.equal(await page.getByRole("link", { name: "Admin" }).isVisible(), true);
        await page.getByLabel("Name").fill("carol");
        await page.getByLabel("Role", { exact: true }).selectOption("submitter");
        await page.getByRole("button", { name: "Add user" }).click();
        await page.locator("#secret-title").getByText("Token for carol").waitFor();
        assert.match(await page.locator("#secret").innerText(), /Copy it now: it will not be shown again/);
        carolToken = await page.locator("#secret-value").inputValue();
        assert.equal((await (await whoami(carolToken)).json()).role, "submitter");
        await page.getByRole("button", { name: "Copy" }).click();
        await page.locator("#secret-status").getByText(/^(Copied to the clipboard|Selected: press Ctrl\+C)/).waitFor();
        await page.locator('#users tr[data-name="carol"]').waitFor();
        await docShot(page, "admin-users", 640);
        await shoot(page, "admin-users");
        await page.getByRole("button", { name: "Done, hide it" }).click();
        assert.equal(await page.locator("#secret").isHidden(), true);
        assert.equal(await page.locator("#secret-value").inputValue(), "", "gone from the page once hidden");
      });

      await t.step("change a role: the user's token carries it at once", async () => {
        await page.getByLabel("Role of carol").selectOption("viewer");
        await page.locator("#user-status").getByText("carol is now a viewer.").waitFor();
        assert.equal((await (await whoami(carolToken)).json()).role, "viewer");
        // The last admin stays one: the API's refusal is shown and the choice goes back.
        await page.getByLabel("Role of admin").selectOption("viewer");
        await page.locator("#list-error").getByText(/last admin/).waitFor();
        assert.equal(await page.getByLabel("Role of admin").inputValue(), "admin");
      });

      await t.step("rotate a token (after a confirm): the new one is shown once, the old one stops", async () => {
        await page.getByRole("button", { name: "Rotate the token of carol" }).click();
        await page.locator("#secret-title").getByText("New token for carol").waitFor();
        const fresh = await page.locator("#secret-value").inputValue();
        assert.notEqual(fresh, carolToken);
        assert.equal((await whoami(carolToken)).status, 401);
        assert.equal((await whoami(fresh)).status, 200);
        carolToken = fresh;
      });

      await t.step("the audit log: filter by action and by user, page on and back", async () => {
        for (let i = 0; i < 55; i++) {
          assert.equal((await tm.api("/api/v1/users/carol/token", { method: "POST" })).status, 200);
        }
        await page.getByRole("link", { name: "Audit log" }).click();
        await page.waitForURL(`${base}/admin/audit`);
        const rows = page.locator("#audit tbody tr");
        await page.locator("#audit-range").getByText(/^Entries 1–50, newest first$/).waitFor();
        await page.getByLabel("Action").selectOption("user.role");
        await page.locator("#audit-range").getByText("Entries 1–1, newest first").waitFor();
        assert.match(await rows.first().innerText(), /user\.role[\s\S]*admin[\s\S]*carol[\s\S]*role viewer/);
        assert.match(page.url(), /[?&]action=user\.role/);
        await page.getByLabel("Action").selectOption("token.rotate");
        await page.locator("#audit-range").getByText("Entries 1–50, newest first").waitFor();
        assert.equal(await page.getByRole("button", { name: "Newer" }).isDisabled(), true);
        await page.getByRole("button", { name: "Older" }).click();
        await page.locator("#audit-range").getByText("Entries 51–56, newest first").waitFor();
        assert.equal(await page.getByRole("button", { name: "Older" }).isDisabled(), true);
        await page.getByRole("button", { name: "Newer" }).click();
        await page.locator("#audit-range").getByText("Entries 1–50, newest first").waitFor();
        await page.getByLabel("User").fill("nobody");
        await page.getByRole("button", { name: "Filter" }).click();
        await page.locator("#empty").getByText("No entry matches this filter").waitFor();
        await page.getByLabel("User").fill("admin");
        await page.getByLabel("Action").selectOption("user.add");
        await page.locator("#audit-range").getByText("Entries 1–1, newest first").waitFor();
        await docShot(page, "admin-audit", 420);
        await shoot(page, "admin-audit");
      });

      await t.step("the join token: masked, revealed (audited), rotated after saying what that does", async () => {
        await page.getByRole("link", { name: "Join token" }).click();
        await page.waitForURL(`${base}/admin/join-token`);
        assert.equal(await page.locator("#join-value").getAttribute("type"), "password");
        assert.match(await page.locator("#rotate-effects").innerText(), /not joined yet[\s\S]*already joined/);
        const known = (await (await tm.api("/api/v1/nodes/join-token")).json()).token;
        await page.getByRole("button", { name: "Reveal" }).click();
        await page.locator("#join-reveal[aria-pressed=true]").waitFor();
        assert.equal(await page.locator("#join-value").inputValue(), known);
        const dialog = page.waitForEvent("dialog");
        await page.getByRole("button", { name: "Rotate the join token" }).click();
        assert.match((await dialog).message(), /not joined yet need the new one[\s\S]*already joined keep working/);
        await page.locator("#join-status").getByText(/^Rotated/).waitFor();
        const rotated = await page.locator("#join-value").inputValue();
        assert.notEqual(rotated, known);
        assert.equal((await (await tm.api("/api/v1/nodes/join-token")).json()).token, rotated);
        await page.getByRole("button", { name: "Hide" }).click();
        assert.equal(await page.locator("#join-value").getAttribute("type"), "password");
        await docShot(page, "admin-join-token", 560);
      });

      await t.step("anyone else gets a plain 403 page, and no admin link", async () => {
        const viewerToken = await addApiUser(tm, "vera", "viewer");
        const other = await watchedPage(browser, errors);
        await signInAs(other, base, viewerToken, "/admin/users", "vera (viewer)");
        await other.getByRole("heading", { name: "403: admins only" }).waitFor();
        assert.match(await other.locator("main").innerText(), /signed in as vera, whose role is viewer/);
        assert.equal(await other.locator("#users").count(), 0);
        assert.equal(await other.getByRole("link", { name: "Admin" }).isHidden(), true);
        await shoot(other, "admin-forbidden");
        await other.close();
      });
      // The refusal to demote the last admin is a 409 the browser logs itself; nothing else may appear.
      errors.splice(0, errors.length, ...errors.filter((e) => !/status of 409 \(Conflict\)/.test(e)));
    }),
});
