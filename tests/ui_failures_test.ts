/**
 * The task page's failures first, end to end in headless Chromium: a task of
 * 10,000 instances of which 1,000 fail (one by timing out) runs on a local
 * node while the page watches. The failure list, next and previous failure,
 * the details panel that stays in view, and failed cells marked without
 * colour are checked; long tasks on the page's main thread are measured and
 * printed.
 */
import assert from "node:assert/strict";
import { makeZip, submitZip } from "./kit/mod.ts";
import { docShot, longMainThreadTasks, opts, shoot, signIn, TRACE_CATEGORIES, watchedPage, withUi } from "./kit/ui.ts";

/** Long tasks (main thread blocked over 50 ms) the page has seen, in ms. */
const WATCH_LONG_TASKS = () => {
  const seen: number[] = [];
  Object.assign(globalThis, { longTasks: seen });
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) seen.push(e.duration);
  }).observe({ type: "longtask", buffered: true });
};

Deno.test({
  name: "web UI: a 10,000-instance task with 1,000 failures lists them, steps through them, stays responsive",
  ...opts,
  fn: (t) =>
    withUi(4, async ({ tm, base, browser, errors }) => {
      const page = await watchedPage(browser, errors);
      await page.addInitScript(WATCH_LONG_TASKS);
      await signIn(page, base);

      const zip = await makeZip({
        "task.toml": `[task]\nname = "frames"\nentrypoint = "run.sh"\ninstances = 10000\n[limits]\ntimeout = "2s"\n`,
        "run.sh": `#!/bin/sh\ni=$PARALLELIC_INSTANCE\n[ $i -eq 9997 ] && exec sleep 30\n` +
          `if [ $((i % 10)) -eq 7 ]; then echo "loading frame $i" >&2; echo "frame $i: missing texture" >&2; exit 2; fi\n`,
      });
      const res = await submitZip(tm, zip, "frames");
      assert.equal(res.status, 201);
      const { id } = await res.json();

      await t.step("the page follows the task live to its end, every number with separators", async () => {
        await browser.startTracing(page, { categories: TRACE_CATEGORIES });
        await page.goto(`${base}/tasks/${id}`);
        await page.locator("#task-state.s-failed").waitFor({ timeout: 300_000 });
        await page.locator("#counts").getByText("9,000 succeeded").waitFor();
        await page.locator("#counts").getByText("1,000 failed").waitFor();
        await page.locator("#failures .failures-position").getByText("1,000 failed").waitFor();
        assert.match(await page.locator("#grid").getAttribute("aria-label") ?? "", /Grid of 10,000 instances/);
        const longTasks = await page.evaluate(() => (globalThis as unknown as { longTasks: number[] }).longTasks);
        const trace = await browser.stopTracing();
        assert.ok(longMainThreadTasks(trace, 0).length > 0, "the trace holds the page's main thread");
        const traced = longMainThreadTasks(trace);
        const most = (ms: number[]) => Math.max(0, ...ms).toFixed(0);
        console.log(
          `task page over a 10,000-instance run with 1,000 failures: ${longTasks.length} long tasks ` +
            `(main thread blocked over 50 ms), longest ${most(longTasks)} ms; of those tasks the main thread ` +
            `ran at most ${most(traced.map((x) => x.cpuMs))} ms, the rest it waited for a CPU`,
        );
      });

      await t.step("the failure list shows index, params, how it ended, node and the last stderr line", async () => {
        const rows = page.locator("#failures tbody tr");
        assert.equal(await rows.count(), 100, "a page of rows");
        const first = await rows.first().innerText();
        assert.match(first, /^7\s/);
        assert.match(first, /exit 2/);
        assert.match(first, /\blocal\b/);
        assert.match(first, /frame 7: missing texture/);
        assert.match(await page.locator("#failures .failures-range").innerText(), /1–100 of 1,000/);
      });

      await t.step("next and previous failure open failed instances in order, by button and by key", async () => {
        await page.getByRole("button", { name: "Next failure" }).click();
        await page.locator("#instance-title").getByText("Instance 7", { exact: true }).waitFor();
        await page.locator("#failures .failures-position").getByText("Failure 1 of 1,000").waitFor();
        await page.locator("#instance-facts").getByText("frame 7: missing texture").waitFor();
        await page.keyboard.press("n");
        await page.locator("#instance-title").getByText("Instance 17", { exact: true }).waitFor();
        await page.getByRole("button", { name: "Previous failure" }).click();
        await page.locator("#instance-title").getByText("Instance 7", { exact: true }).waitFor();
        assert.equal(await page.getByRole("button", { name: "Previous failure" }).isDisabled(), true);
        // From an instance that did not fail, the next failure after it; the list turns to its page.
        await page.getByLabel("Instance number").fill("1500");
        await page.getByRole("button", { name: "Open", exact: true }).click();
        await page.locator("#instance-title").getByText("Instance 1500", { exact: true }).waitFor();
        await page.keyboard.press("n");
        await page.locator("#instance-title").getByText("Instance 1507", { exact: true }).waitFor();
        await page.locator("#failures .failures-range").getByText("101–200 of 1,000").waitFor();
        assert.equal(await page.locator("#failures tr.current").getAttribute("data-index"), "1507");
      });

      await t.step("a timed-out instance says so", async () => {
        await page.getByRole("button", { name: "Next page" }).click();
        await page.locator("#failures .failures-range").getByText("201–300 of 1,000").waitFor();
        for (let i = 0; i < 7; i++) await page.getByRole("button", { name: "Next page" }).click();
        await page.locator("#failures .failures-range").getByText("901–1,000 of 1,000").waitFor();
        assert.match(await page.locator(`#failures tr[data-index="9997"]`).innerText(), /timed out/);
        await page.getByRole("button", { name: "Open failed instance 9997" }).click();
        await page.locator("#instance-title").getByText("Instance 9997", { exact: true }).waitFor();
        // The exit code is that of the process the timeout killed.
        await page.locator("#instance-facts dd").getByText(/^(\d+ \()?timed out\)?$/).waitFor();
      });

      await t.step("failed cells carry a mark, not only a colour", async () => {
        // 10,000 instances: 6 px cells, 1 px gaps, 3 px around; instance i is in column i at the top row.
        const [failedCentre, succeededCentre] = await page.evaluate<number[][]>(`(() => {
          const ctx = document.getElementById("grid").getContext("2d");
          const dpr = globalThis.devicePixelRatio || 1;
          const centre = (i) => Array.from(ctx.getImageData((3 + i * 7 + 3) * dpr, (3 + 3) * dpr, 1, 1).data);
          return [centre(7), centre(6)];
        })()`);
        assert.deepEqual(failedCentre.slice(0, 3), [255, 255, 255], "a white cross through a failed cell");
        assert.notDeepEqual(succeededCentre.slice(0, 3), [255, 255, 255]);
      });

      await t.step("the details panel stays in view while the grid scrolls", async () => {
        await page.getByRole("button", { name: "Open failed instance 9997" }).click();
        await page.locator("#grid").scrollIntoViewIfNeeded();
        await page.evaluate(`(() => {
          const grid = document.getElementById("grid");
          scrollTo(0, grid.getBoundingClientRect().bottom + scrollY - innerHeight);
        })()`);
        const box = await page.locator("#instance").boundingBox();
        assert.ok(box && box.y >= 0 && box.y < 800, `the panel is in view: ${JSON.stringify(box)}`);
        await page.evaluate("scrollTo(0, 0)");
        await page.getByRole("button", { name: "Previous failure" }).click();
        await page.locator("#instance-title").getByText("Instance 9987", { exact: true }).waitFor();
        await page.locator("#instance-facts").getByText("frame 9987: missing texture").waitFor();
        await docShot(page, "failures", 1400);
        await shoot(page, "task-failures");
      });
    }),
});
