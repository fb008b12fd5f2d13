/**
 * Links that work: with "Remember me on this device", a new tab, a bookmark
 * or a shared link opens the page signed in; without it, only the tab that
 * signed in is; signing out forgets the token on the device.
 */
import assert from "node:assert/strict";
import type { Page } from "playwright-core";
import { makeZip, submitZip, TEST_TOKEN } from "./kit/mod.ts";
import { opts, shoot, withUi } from "./kit/ui.ts";

Deno.test({
  name: "web UI: remember me on this device opens links in new tabs signed in; sign out forgets it",
  ...opts,
  fn: (t) =>
    withUi(0, async ({ tm, base, browser, errors }) => {
      const zip = await makeZip({
        "task.toml": `[task]\nname = "linked"\nentrypoint = "run.sh"\n`,
        "run.sh": "#!/bin/sh\n",
      });
      const res = await submitZip(tm, zip, "linked");
      assert.equal(res.status, 201);
      const { id } = await res.json();
      const link = `${base}/tasks/${id}`;
      const token = (page: Page) =>
        page.evaluate<Array<string | null>>(
          `[sessionStorage.getItem("parallelic.token"), localStorage.getItem("parallelic.token")]`,
        );

      await t.step("without it, a new tab of the same browser asks to sign in", async () => {
        const context = await browser.newContext();
        const page = await context.newPage();
        page.on("pageerror", (e) => errors.push(`uncaught ${e.message}`));
        await page.goto(`${base}/signin`);
        await page.getByLabel("Access token").fill(TEST_TOKEN);
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.waitForURL(`${base}/tasks`);
        assert.deepEqual(await token(page), [TEST_TOKEN, null]);
        const tab = await page.context().newPage();
        await tab.goto(link);
        await tab.waitForURL(/\/signin\?next=/);
        await context.close();
      });

      await t.step("with it, a new tab opens a shared link signed in", async () => {
        const context = await browser.newContext();
        const page = await context.newPage();
        page.on("pageerror", (e) => errors.push(`uncaught ${e.message}`));
        await page.goto(`${base}/signin?next=/tasks`);
        await page.getByLabel("Access token").fill(TEST_TOKEN);
        await page.getByLabel("Remember me on this device").check();
        await shoot(page, "signin-remember");
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.waitForURL(`${base}/tasks`);
        assert.deepEqual(await token(page), [TEST_TOKEN, TEST_TOKEN]);
        const tab = await context.newPage();
        await tab.goto(link);
        await tab.locator("#task-name").getByText("linked").waitFor();
        assert.equal(tab.url(), link, "no detour through the sign-in page");

        await tab.getByRole("button", { name: "Sign out" }).click();
        await tab.waitForURL(/\/signin/);
        assert.deepEqual(await token(tab), [null, null], "signing out forgets it on the device");
        const later = await context.newPage();
        await later.goto(link);
        await later.waitForURL(/\/signin\?next=/);
        await context.close();
      });
    }),
});
