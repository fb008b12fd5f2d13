/**
 * A node's page end to end in headless Chromium: reached from the node list,
 * its facts live, and its CPU, memory and slot use as small inline SVG
 * charts drawn from the manager's samples of its heartbeats.
 */
import assert from "node:assert/strict";
import { makeZip, submitZip } from "./kit/mod.ts";
import { docShot, opts, shoot, signIn, watchedPage, withUi } from "./kit/ui.ts";

Deno.test({
  name: "web UI: a node's page charts its CPU, memory and slot use over the last hour",
  ...opts,
  fn: (t) =>
    withUi(2, async ({ tm, base, browser, errors }) => {
      const page = await watchedPage(browser, errors);
      await signIn(page, base, "/nodes");
      const zip = await makeZip({ "task.toml": `[task]\nname = "busy"\ncommand = "sleep 30"\ninstances = 2\n` });
      const res = await submitZip(tm, zip, "busy");
      assert.equal(res.status, 201);
      const { id } = await res.json();

      await t.step("the node list links to the node's page", async () => {
        const link = page.locator("#nodes tbody tr a").first();
        const name = await link.innerText();
        await link.click();
        await page.waitForURL(`${base}/nodes/${name}`);
        assert.equal(await page.locator("#node-name").innerText(), name);
        await page.locator("#node-state .badge.s-ready").waitFor();
      });

      await t.step("three charts with what they show in words; the slot chart sees the running task", async () => {
        await page.locator("#node-facts").getByText("2 of 2 in use").waitFor();
        // The chart follows heartbeats at most every 15 s: reload for the newest sample.
        await page.reload();
        const charts = page.locator("#usage-charts svg[role=img]");
        await charts.nth(2).waitFor();
        assert.equal(await charts.count(), 3);
        const labels = await charts.evaluateAll((els) => els.map((e) => e.getAttribute("aria-label")));
        assert.match(labels[0]!, /^CPU busy: now \d+%, at most \d+% over the window \(scale up to 100%\)$/);
        assert.match(labels[1]!, /^Memory in use: now [\d.]+ [KMGT]iB, at most/);
        assert.match(labels[2]!, /^Slots in use: now 2, at most 2 over the window \(scale up to 2\)$/);
        assert.ok((await page.locator("#usage-charts .chart-line").count()) >= 3, "a line or a point per chart");
        assert.match(await page.locator("#usage-status").innerText(), /^\d+ samples?, updated/);
      });

      await t.step("an hour of samples draws as lines, broken where the node was silent", async () => {
        // The manager keeps samples from its own start only: an hour of them is served to the page here.
        const now = Date.now();
        const spanMs = 30_000;
        const samples = [];
        for (let i = 119; i >= 0; i--) {
          if (i >= 70 && i < 76) continue; // three minutes without a heartbeat
          const wave = (Math.sin(i / 9) + 1) / 2;
          samples.push({
            at: Math.floor((now - i * spanMs) / spanMs) * spanMs,
            cpuBusy: 0.15 + 0.7 * wave,
            memoryUsedBytes: Math.round((4 + 10 * wave) * 2 ** 30),
            usedSlots: Math.round(2 * wave),
          });
        }
        const usage = { name: "local", spanMs, slots: 2, memoryBytes: 24 * 2 ** 30, samples };
        await page.route("**/api/v1/nodes/*/usage*", (route) => route.fulfill({ json: usage }));
        await page.reload();
        await page.locator("#usage-status").getByText(/^114 samples, updated/).waitFor();
        for (const chart of await page.locator("#usage-charts svg").all()) {
          assert.equal(await chart.locator("polyline.chart-line").count(), 2, "two runs either side of the gap");
        }
        assert.match(
          (await page.locator("#usage-charts svg").first().getAttribute("aria-label"))!,
          /^CPU busy: now \d+%, at most 85% over the window/,
        );
        await docShot(page, "node", 560);
        await shoot(page, "node");
        await page.unroute("**/api/v1/nodes/*/usage*");
      });
      assert.equal((await tm.api(`/api/v1/tasks/${id}/cancel`, { method: "POST" })).status, 200);
    }),
});
