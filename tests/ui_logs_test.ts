/**
 * The log panel end to end in headless Chromium: attempts one at a time,
 * stdout and stderr told apart, timestamps, search, raw download, and a
 * follow that comes back after the browser loses its connection.
 */
import assert from "node:assert/strict";
import { makeZip, submitZip } from "./kit/mod.ts";
import { docShot, opts, shoot, signIn, startCuttableProxy, watchedPage, withUi } from "./kit/ui.ts";

Deno.test({
  name: "web UI: a log per attempt, stderr marked, timestamps, search, download, follow through an outage",
  ...opts,
  fn: (t) =>
    withUi(2, async ({ tm, base: direct, browser, errors }) => {
      // The browser reaches the manager through a proxy the test can cut.
      await using proxy = startCuttableProxy(direct);
      const base = proxy.url;
      const page = await watchedPage(browser, errors);
      await signIn(page, base);
      // Attempt 0 fails at once; attempt 1 ticks for about 8 s, then succeeds.
      const zip = await makeZip({
        "task.toml": `[task]\nname = "ticks"\nentrypoint = "run.sh"\n[limits]\nretries = 1\n`,
        "run.sh": `#!/bin/sh\nif [ "$PARALLELIC_ATTEMPT" = 0 ]; then echo "out of the first"; ` +
          `echo "err of the first" >&2; exit 1; fi\n` +
          `i=1; while [ $i -le 40 ]; do echo "tick $i"; [ $i -eq 20 ] && echo "half way" >&2; sleep 0.2; ` +
          `i=$((i + 1)); done\n`,
      });
      const res = await submitZip(tm, zip, "ticks");
      assert.equal(res.status, 201);
      const { id } = await res.json();
      const log = page.locator("#log");

      await t.step("the latest attempt's log follows; it survives the connection dropping", async () => {
        await page.goto(`${base}/tasks/${id}#i=0`);
        await log.getByText("tick 3", { exact: true }).waitFor();
        await page.locator("#log-status").getByText("following…").waitFor();
        assert.equal(await page.locator("#log-attempt").inputValue(), "1");
        assert.equal(await log.getByText("out of the first").count(), 0, "one attempt at a time");
        proxy.cut();
        await page.locator("#log-status").getByText("connection lost; trying again in 1 s…").waitFor();
        // A second try fails too while the outage lasts; the follow keeps trying.
        await page.locator("#log-status").getByText("connection lost; trying again in 2 s…").waitFor();
        proxy.restore();
        await log.getByText("tick 40", { exact: true }).waitFor({ timeout: 60_000 });
        await page.locator("#log-status").getByText("end of log").waitFor();
        for (const n of [1, 10, 25, 40]) {
          assert.equal(await log.getByText(`tick ${n}`, { exact: true }).count(), 1, `tick ${n} once`);
        }
        // The browser reports the connections the outage broke or refused itself; nothing else may appear.
        errors.splice(0, errors.length, ...errors.filter((e) => !/Failed to load resource: net::ERR_/.test(e)));
        const err = log.locator(".l-stderr");
        assert.equal(await err.count(), 1);
        assert.equal(await err.locator(".text").innerText(), "half way");
        assert.equal(await err.locator(".tag").innerText(), "err", "stderr is marked, not only coloured");
      });

      await t.step("search keeps the matching lines and counts them", async () => {
        await page.getByLabel("Search the log").fill("tick 1");
        await page.locator("#log-matches").getByText("11 of 41 lines match").waitFor();
        assert.equal(await log.locator(".line:not([hidden])").count(), 11);
        await page.getByLabel("Search the log").fill("");
        await log.locator(".line:not([hidden])").nth(40).waitFor();
        assert.equal(await page.locator("#log-matches").innerText(), "");
      });

      await t.step("timestamps show on demand", async () => {
        assert.equal(await log.locator(".ts").first().isVisible(), false);
        await page.getByLabel("Timestamps").check();
        assert.match(await log.locator(".ts").first().innerText(), /^\d\d:\d\d:\d\d\.\d{3}$/);
        await docShot(page, "logs", 1100);
        await shoot(page, "task-logs");
      });

      await t.step("the first attempt reads on its own; the raw log downloads", async () => {
        await page.getByLabel("Attempt").selectOption("0");
        await log.getByText("err of the first").waitFor();
        await page.locator("#log-status").getByText("end of log").waitFor();
        assert.equal(await log.getByText("tick 1", { exact: true }).count(), 0);
        assert.equal(await log.locator(".l-stderr .text").innerText(), "err of the first");
        assert.equal(await log.locator(".l-stdout .text").innerText(), "out of the first");
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("button", { name: "Download log" }).click(),
        ]);
        assert.equal(download.suggestedFilename(), `${id}-0-attempt-0.log`);
        const text = await Deno.readTextFile((await download.path())!);
        assert.match(text, /out of the first/);
        assert.match(text, /err of the first/);
        assert.doesNotMatch(text, /tick/);
      });
    }),
});
