/**
 * Outage states end to end in headless Chromium: while the manager cannot
 * be reached the page says so plainly and keeps what it knew, marked as
 * out of date; no raw "Failed to fetch"; on recovery the notice and the
 * outage's errors go.
 */
import assert from "node:assert/strict";
import { makeZip, submitZip } from "./kit/mod.ts";
import { docShot, opts, signIn, startCuttableProxy, watchedPage, withUi } from "./kit/ui.ts";

Deno.test({
  name: "web UI: an unreachable manager is said plainly, facts kept as stale, errors cleared on recovery",
  ...opts,
  fn: (t) =>
    withUi(0, async ({ tm, base: direct, browser, errors }) => {
      await using proxy = startCuttableProxy(direct);
      const base = proxy.url;
      const zip = await makeZip({
        "task.toml": `[task]\nname = "waiting"\nentrypoint = "run.sh"\n`,
        "run.sh": "#!/bin/sh\n",
      });
      const res = await submitZip(tm, zip, "waiting");
      assert.equal(res.status, 201);
      const { id } = await res.json();
      const page = await watchedPage(browser, errors);
      await signIn(page, base, `/tasks/${id}`);
      await page.locator("#task-state.s-queued").waitFor();

      await t.step("during the outage: a plain notice, the facts kept and dimmed, no raw fetch error", async () => {
        proxy.cut();
        await page.locator("#outage").getByText(/^The manager cannot be reached since/).waitFor();
        await page.locator("#live").getByText("reconnecting…").waitFor();
        assert.equal(await page.locator("body.stale").count(), 1);
        assert.equal(await page.locator("#task-name").innerText(), "waiting", "the last known facts stay");
        await page.getByRole("button", { name: "Why is this queued?" }).click();
        await page.locator("#action-error").getByText("The manager cannot be reached: try again once it is back.")
          .waitFor();
        assert.doesNotMatch(await page.locator("body").innerText(), /Failed to fetch/);
        await docShot(page, "outage", 500);
      });

      await t.step("on recovery the notice and the outage's errors go", async () => {
        proxy.restore();
        await page.locator("#live").getByText("live").waitFor({ timeout: 30_000 });
        await page.locator("#outage").waitFor({ state: "hidden" });
        assert.equal(await page.locator("body.stale").count(), 0);
        assert.equal(await page.locator("#action-error").innerText(), "");
        await page.getByRole("button", { name: "Why is this queued?" }).click();
        await page.locator("#explain-text").getByText(/^Task \(queued\)/).waitFor();
      });
      // The browser reports the connections the outage broke or refused itself; nothing else may appear.
      errors.splice(0, errors.length, ...errors.filter((e) => !/Failed to load resource: net::ERR_/.test(e)));
    }),
});
