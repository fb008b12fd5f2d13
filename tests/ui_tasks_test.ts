/**
 * The task list end to end in headless Chromium: paging past 200 with the true total, search, and what an empty filter
 * says.
 */
import assert from "node:assert/strict";
import { makeZip, submitZip } from "./kit/mod.ts";
import { docShot, opts, shoot, signIn, watchedPage, withUi } from "./kit/ui.ts";

Deno.test({
  name: "web UI: the task list pages past 200, searches, and says when a filter finds nothing",
  ...opts,
  fn: (t) =>
    withUi(0, async ({ tm, base, browser, errors }) => {
      // No node: every task stays queued.
      for (let n = 1; n <= 205; n++) {
        const zip = await makeZip({
          "task.toml": `[task]\nname = "shot ${n}"\nentrypoint = "run.sh"\n`,
          "run.sh": "#!/bin/sh\n",
        });
        assert.equal((await submitZip(tm, zip, `shot-${n}`)).status, 201);
      }
      const page = await watchedPage(browser, errors);
      await signIn(page, base);
      const rows = page.locator("#tasks tbody tr");

      await t.step("200 newest first of the total, then the older ones on asking", async () => {
        await page.locator("#list-count").getByText("1–200 of 205 tasks").waitFor();
        assert.equal(await rows.count(), 200);
        assert.match(await rows.first().innerText(), /shot 205/);
        await page.getByRole("button", { name: "Show older tasks" }).click();
        await page.locator("#list-count").getByText("1–205 of 205 tasks").waitFor();
        assert.match(await rows.last().innerText(), /shot 1\b/);
        assert.equal(await page.getByRole("button", { name: "Show older tasks" }).isHidden(), true);
      });

      await t.step("the total follows new tasks and a state filter", async () => {
        const zip = await makeZip({ "task.toml": `[task]\nname = "late"\ncommand = "true"\n` });
        assert.equal((await submitZip(tm, zip, "late")).status, 201);
        await page.locator("#list-count").getByText("1–206 of 206 tasks").waitFor();
        await page.getByLabel("State").selectOption("queued");
        await page.locator("#list-count").getByText("1–200 of 206 tasks").waitFor();
        await page.getByLabel("State").selectOption("running");
        await page.locator("#empty-filtered").getByText("No running tasks.").waitFor();
        await page.getByLabel("State").selectOption("");
        await page.locator("#list-count").getByText("1–200 of 206 tasks").waitFor();
        await page.locator("#tasks tbody tr").first().waitFor();
        await docShot(page, "tasks", 420);
      });

      await t.step("search by name, by id; the search stays in the URL", async () => {
        await page.getByLabel("Search tasks").fill("shot 204");
        await page.locator("#list-count").getByText("1 task shown").waitFor();
        assert.match(await rows.first().innerText(), /shot 204/);
        assert.match(page.url(), /[?&]q=shot\+204/);
        const id = (await rows.first().getAttribute("data-id"))!;
        await page.getByLabel("Search tasks").fill(id);
        await page.locator(`#tasks tr[data-id="${id}"]`).waitFor();
        await page.locator("#list-count").getByText("1 task shown").waitFor();
        await shoot(page, "tasks-search");
      });

      await t.step("an empty filter says what it looked for, not that there are no tasks", async () => {
        await page.getByLabel("Search tasks").fill("");
        await page.getByLabel("State").selectOption("failed");
        await page.locator("#empty-filtered").getByText("No failed tasks.").waitFor();
        assert.equal(await page.locator("#empty").isHidden(), true);
        await page.getByLabel("Search tasks").fill("zzz");
        await page.locator("#empty-filtered").getByText("No failed tasks matching “zzz”.").waitFor();
        await page.getByLabel("State").selectOption("");
        await page.locator("#empty-filtered").getByText("No tasks matching “zzz”.").waitFor();
      });
    }),
});
