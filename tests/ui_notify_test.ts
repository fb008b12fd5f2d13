/**
 * The task page's notifications, end to end in headless Chromium: the
 * webhook's line follows a failed try and the retry that delivers it, and
 * "Notify me when it ends" asks for permission, survives a reload and fires
 * a desktop notification when the event stream shows the task ended.
 */
import assert from "node:assert/strict";
import { makeZip, startTestManager, submitZip } from "./kit/mod.ts";
import { docShot, launch, opts, signIn, watchedPage } from "./kit/ui.ts";

/** Records each desktop notification the page makes (it still makes the real one). */
const WATCH_NOTIFICATIONS = `(() => {
  const Real = window.Notification;
  const made = [];
  function Recorded(title, options) {
    made.push({ title, body: options?.body });
    return new Real(title, options);
  }
  Object.defineProperty(Recorded, "permission", { get: () => Real.permission });
  Recorded.requestPermission = () => Real.requestPermission();
  window.Notification = Recorded;
  window.notificationsMade = made;
})();`;

Deno.test({
  name: "web UI: the task page shows the webhook failing then delivered, and notifies the desktop when it ends",
  ...opts,
  async fn() {
    let answers = 0;
    await using _hook = {
      server: Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
        await req.body?.cancel();
        return new Response(null, { status: answers++ === 0 ? 500 : 200 });
      }),
      [Symbol.asyncDispose]() {
        return this.server.shutdown();
      },
    };
    await using tm = await startTestManager({
      localNode: true,
      slots: 2,
      notify: { allow: ["127.0.0.1"], firstRetryMs: 4000 },
    });
    const base = tm.manager.url;
    const browser = await launch();
    const errors: string[] = [];
    try {
      const page = await watchedPage(browser, errors);
      await page.context().grantPermissions(["notifications"], { origin: base });
      await page.addInitScript(WATCH_NOTIFICATIONS);
      await signIn(page, base);
      const res = await submitZip(
        tm,
        await makeZip({
          "task.toml": `[task]\nname = "nightly-render"\ncommand = "sleep 6"\ninstances = 2\n` +
            `[notify]\nurl = "http://127.0.0.1:${_hook.server.addr.port}/parallelic"\n`,
        }),
      );
      const { id } = await res.json();
      await page.goto(`${base}/tasks/${id}`);
      await page.locator("#task-state.s-running").waitFor();
      const line = page.locator("#notify .notify-line");
      assert.match(await line.textContent() ?? "", /will be sent when the task ends failed or succeeded/);

      const toggle = page.getByLabel("Notify me when it ends");
      await toggle.check();
      assert.equal(await page.evaluate(`localStorage.getItem("parallelic.notify-me.${id}")`), "1");
      await page.reload();
      await page.locator("#task-state.s-running").waitFor();
      assert.ok(await toggle.isChecked(), "kept for this task across a reload");

      await page.locator("#task-state.s-succeeded").waitFor({ timeout: 30_000 });
      await line.getByText(/failing \(answered 500.*\), retry in \d+ s/).waitFor({ timeout: 15_000 });
      const made = await page.evaluate("notificationsMade") as Array<{ title: string; body: string }>;
      assert.deepEqual(made.map((n) => n.title), ["nightly-render succeeded"], "one notification, when it ended");
      assert.match(made[0].body, /2 succeeded, 0 failed/);
      assert.equal(await page.evaluate(`localStorage.getItem("parallelic.notify-me.${id}")`), null, "fired: cleared");
      assert.ok(await toggle.isHidden(), "nothing left to wait for");

      await line.getByText(/delivered 200 at .* \(try 2\)/).waitFor({ timeout: 15_000 });
      await docShot(page, "notify", 420);
      if (errors.length) throw new Error(`Console errors:\n${errors.join("\n")}`);
    } finally {
      await browser.close();
    }
  },
});
