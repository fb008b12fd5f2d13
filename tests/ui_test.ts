/**
 * End to end through the web UI: Debian's Chromium, headless, driven by
 * playwright-core, against a real manager with a local node. Every page is
 * photographed at desktop and phone width into test-output/screenshots/, and
 * any console error fails the test.
 */
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { join } from "node:path";
import type { Page } from "playwright-core";
import { listFolder } from "../core/package_zip.ts";
import {
  makeZip,
  ROOT,
  startTestManager,
  submitZip,
  tempDir,
  TEST_TOKEN,
  type TestManager,
  waitUntil,
} from "./kit/mod.ts";
import { DESKTOP, launch, opts, shoot, signIn, watchedPage } from "./kit/ui.ts";

const rowOf = (page: Page, id: string) => page.locator(`#tasks tr[data-id="${id}"]`);

/**
 * A task of 60 that stops half way: instances 0, 1, 25 and 26 sleep for a
 * minute, 3, 10, 17 and 24 fail, the others succeed at once. With 4 slots it
 * holds at 19 succeeded, 4 failed, 4 running, the rest queued.
 */
async function submitMixed(tm: TestManager): Promise<string> {
  const zip = await makeZip({
    "task.toml": `[task]\nname = "mixed"\nentrypoint = "run.sh"\ninstances = 60\n`,
    "run.sh": `#!/bin/sh\ni=$PARALLELIC_INSTANCE\necho "started $i"\n` +
      `case $i in 0|1|25|26) exec sleep 60;; esac\n[ $((i % 7)) -ne 3 ]\n`,
  });
  const res = await submitZip(tm, zip, "mixed");
  assert.equal(res.status, 201);
  return (await res.json()).id;
}

Deno.test({
  name: "web UI: sign in, submit examples/hello from a folder, watch it live, read logs, cancel, see errors",
  ...opts,
  async fn(t) {
    await using tm = await startTestManager({ localNode: true, slots: 4 });
    const base = tm.manager.url;
    const browser = await launch();
    const errors: string[] = [];
    try {
      const page = await watchedPage(browser, errors);
      const watcher = await watchedPage(browser, errors);

      await t.step("a wrong token is refused next to the token field", async () => {
        const own: string[] = [];
        const p = await watchedPage(browser, own);
        await p.goto(`${base}/signin`);
        await shoot(p, "signin");
        await p.getByLabel("Access token").fill("wrong-token");
        await p.getByRole("button", { name: "Sign in" }).click();
        await p.locator("#token-error").getByText("Invalid token").waitFor();
        assert.equal(await p.evaluate(() => sessionStorage.length), 0, "a refused token is not kept");
        await p.close();
        // The browser reports the 401 itself; nothing else may appear.
        assert.ok(own.every((e) => /status of 401/.test(e)), own.join("\n"));
      });

      await t.step("signing in keeps the token in the tab, not in the URL", async () => {
        await signIn(page, base);
        await signIn(watcher, base);
        assert.equal(await page.evaluate(() => sessionStorage.getItem("parallelic.token")), TEST_TOKEN);
        assert.doesNotMatch(page.url(), new RegExp(TEST_TOKEN));
        await watcher.evaluate(() => Object.assign(globalThis, { notReloaded: true }));
      });

      let helloId = "";
      await t.step("examples/hello goes in by folder input, summary first, then upload", async () => {
        await page.goto(`${base}/submit`);
        await page.getByLabel("Task folder").setInputFiles(join(ROOT, "examples", "hello"));
        const summary = page.locator("#summary");
        await summary.getByRole("heading", { name: "hello" }).waitFor();
        const facts = await page.locator("#summary-list").innerText();
        assert.match(facts, /Entrypoint\s+run\.sh/);
        assert.match(facts, /Instances\s+4/);
        assert.match(facts, /Environment\s+GREETING/);
        await shoot(page, "submit");
        await page.getByRole("button", { name: "Submit task" }).click();
        await page.waitForURL(/\/tasks\/t[0-9a-z]{16}$/);
        helloId = page.url().split("/").pop()!;
      });

      await t.step("a folder zipped in the browser twice, touched between, gives one digest", async () => {
        await using dir = await tempDir();
        const folder = join(dir.path, "hello");
        await Deno.mkdir(join(folder, "data", "deep"), { recursive: true });
        for (const name of ["run.sh", "task.toml"]) {
          await Deno.copyFile(join(ROOT, "examples", "hello", name), join(folder, name));
        }
        await Deno.writeTextFile(join(folder, "data", "deep", "b.txt"), "bee\n");
        await Deno.writeTextFile(join(folder, "data", "a-b.txt"), "ay\n");
        const other = await watchedPage(browser, errors);
        await signIn(other, base, "/submit");
        const digests: string[] = [];
        for (const sec of [1_000_000_000, 1_700_000_000]) {
          for (const e of await listFolder(folder)) await Deno.utime(join(folder, e.path), sec, sec);
          await other.goto(`${base}/submit`);
          const checked = other.waitForResponse((r) => r.url().includes("/api/v1/packages/check"));
          await other.getByLabel("Task folder").setInputFiles(folder);
          digests.push((await (await checked).json()).digest);
        }
        await other.close();
        assert.match(digests[0], /^sha256-[0-9a-f]{64}$/);
        assert.equal(digests[0], digests[1]);
      });

      await t.step("the task list of another tab shows it reach succeeded without a reload", async () => {
        await rowOf(watcher, helloId).locator(".badge.s-succeeded").waitFor();
        assert.match(await rowOf(watcher, helloId).innerText(), /4 \/ 4 done/);
        assert.equal(await watcher.evaluate(() => (globalThis as { notReloaded?: boolean }).notReloaded), true);
      });

      await t.step("the task page shows counts and an instance's log", async () => {
        await page.locator("#task-state.s-succeeded").waitFor();
        assert.match(await page.locator("#counts").innerText(), /4 succeeded/);
        // Instance 0 is the first cell, at the grid's top left corner.
        await page.locator("#grid").click({ position: { x: 5, y: 5 } });
        await page.locator("#log").getByText("Hello from instance 0 of 4").waitFor();
        await page.locator("#log-status").getByText("end of log").waitFor();
        assert.match(await page.locator("#instance-facts").innerText(), /Exit code\s+0/);
        assert.match(
          await page.locator("#instance-facts").innerText(),
          /Used\s+CPU \d+ m?s, peak memory [\d.]+ [KMG]iB/,
        );
        assert.match(await page.locator("#timing").innerText(), /CPU used\s+.+ asked \([\d.]+% efficiency\)/);
        await page.getByLabel("Instance number").fill("3");
        await page.getByRole("button", { name: "Open", exact: true }).click();
        await page.locator("#log").getByText("Hello from instance 3 of 4").waitFor();
        assert.match(await page.locator("#attempts").innerText(), /\blocal\b/);
        await shoot(page, "task");
      });

      await t.step("a running instance's log follows; cancel in the list stops the task live", async () => {
        const mixedId = await submitMixed(tm);
        await page.goto(`${base}/tasks/${mixedId}#i=1`);
        await page.locator("#log").getByText("started 1").waitFor();
        await page.locator("#log-status").getByText("following…").waitFor();
        await page.locator("#counts").getByText("19 succeeded").waitFor();
        await page.locator("#counts").getByText("4 failed").waitFor();
        await page.locator("#task-state.s-running").waitFor();
        await shoot(page, "task-running");
        const row = rowOf(watcher, mixedId);
        await row.getByText("23 / 60 done").waitFor();
        await shoot(watcher, "tasks");
        // By keyboard: the button keeps its focus while progress events redraw the row.
        await row.getByRole("button", { name: /Cancel task mixed/ }).focus();
        await watcher.keyboard.press("Enter");
        await row.locator(".badge.s-cancelled").waitFor();
        await page.locator("#task-state.s-cancelled").waitFor();
        await page.locator("#log-status").getByText("end of log").waitFor();
        assert.equal(await page.locator("#cancel").isHidden(), true);
        const task = await tm.waitForTask(mixedId, 10_000);
        assert.equal(task.state, "cancelled");
        assert.equal(task.counts.succeeded, 19);
        assert.equal(task.counts.failed, 4);
        assert.match(await page.locator("#counts").innerText(), /37 cancelled/);
      });

      await t.step("a broken package shows the API's own error and cannot be submitted", async () => {
        const broken = await makeZip({
          "task.toml": `[task]\nentrypoint = "run.sh"\ninstancs = 3\n`,
          "run.sh": "#!/bin/sh\n",
        });
        const api = await submitZip(tm, broken, "broken");
        assert.equal(api.status, 400);
        const { error } = await api.json();
        await page.goto(`${base}/submit`);
        await page.getByLabel("Zip file or task.toml").setInputFiles({
          name: "broken.zip",
          mimeType: "application/zip",
          buffer: Buffer.from(broken),
        });
        await page.locator("#check-error").getByText(error.message, { exact: true }).waitFor();
        assert.equal(await page.getByRole("button", { name: "Submit task" }).isDisabled(), true);
        assert.equal(await page.locator("#summary").isHidden(), true);
        await shoot(page, "submit-error");
      });

      await t.step("a lone task.toml goes in by the picker and runs its command", async () => {
        await page.goto(`${base}/submit`);
        await page.getByLabel("Zip file or task.toml").setInputFiles({
          name: "task.toml",
          mimeType: "text/plain",
          buffer: Buffer.from(`[task]\nname = "lone"\ncommand = "echo lone $PARALLELIC_INSTANCE"\ninstances = 2\n`),
        });
        await page.locator("#summary").getByRole("heading", { name: "lone" }).waitFor();
        assert.match(await page.locator("#summary-list").innerText(), /Command\s+echo lone \$PARALLELIC_INSTANCE/);
        await page.getByRole("button", { name: "Submit task" }).click();
        await page.waitForURL(/\/tasks\/t[0-9a-z]{16}$/);
        await page.locator("#task-state.s-succeeded").waitFor();
        assert.match(await page.locator("#counts").innerText(), /2 succeeded/);
      });

      await t.step(
        "a task no node can place says why it is queued; cancelled, it is deleted from its page",
        async () => {
          const zip = await makeZip({
            "task.toml": `[task]\nname = "gpu"\nentrypoint = "run.sh"\ninstances = 2\n[resources]\ngpus = 1\n`,
            "run.sh": "#!/bin/sh\n",
          });
          const res = await submitZip(tm, zip, "gpu");
          assert.equal(res.status, 201);
          const { id } = await res.json();
          await page.goto(`${base}/tasks/${id}`);
          await page.locator("#task-state.s-queued").waitFor();
          assert.equal(await page.locator("#download").isHidden(), true, "nothing to download while queued");
          assert.equal(await page.locator("#delete").isHidden(), true, "a queued task cannot be deleted");
          const why = page.getByRole("button", { name: "Why is this queued?" });
          await why.click();
          await page.locator("#explain-text").getByText(/^Task \(queued\): .*no node has gpus >= 1/).waitFor();
          await page.getByLabel("Instance number").fill("1");
          await page.getByRole("button", { name: "Open", exact: true }).click();
          await page.locator("#instance-facts .badge.s-queued").waitFor();
          await why.click();
          await page.locator("#explain-text").getByText(/^Instance 1 \(queued\): .*no node has gpus >= 1/).waitFor();
          await shoot(page, "task-queued");
          await page.getByRole("button", { name: "Cancel task" }).click();
          await page.locator("#task-state.s-cancelled").waitFor();
          await why.waitFor({ state: "hidden" });
          await page.getByRole("button", { name: "Delete task" }).click();
          await page.waitForURL(`${base}/tasks`);
          assert.equal((await tm.api(`/api/v1/tasks/${id}`)).status, 404);
        },
      );

      let outputsId = "";
      let version = "";
      await t.step("a data set put through the API is on the Data page, with the task that uses it", async () => {
        const put = await tm.api("/api/v1/data/corpus?file=a.txt", {
          method: "POST",
          headers: { "content-type": "application/octet-stream" },
          body: new TextEncoder().encode("alpha\n"),
        });
        assert.equal(put.status, 201);
        version = (await put.json()).version;
        const zip = await makeZip({
          "task.toml": `[task]\nname = "outputs"\nentrypoint = "run.sh"\ninstances = 3\n[data]\ncorpus = "corpus"\n`,
          "run.sh":
            `#!/bin/sh\ncat "$PARALLELIC_DATA_CORPUS/a.txt" > "$PARALLELIC_OUTPUT/out-$PARALLELIC_INSTANCE.txt"\n`,
        });
        const res = await submitZip(tm, zip, "outputs");
        assert.equal(res.status, 201);
        outputsId = (await res.json()).id;
        assert.equal((await tm.waitForTask(outputsId, 30_000)).state, "succeeded");
        await page.getByRole("link", { name: "Data" }).click();
        await page.waitForURL(`${base}/data`);
        const row = page.locator(`#datasets tr[data-name="corpus"]`);
        await row.waitFor();
        const text = await row.innerText();
        assert.match(text, new RegExp(version.slice(0, 15)));
        assert.match(text, /1 file, 6 B/);
        assert.equal(await row.getByRole("link", { name: "outputs" }).getAttribute("href"), `/tasks/${outputsId}`);
        await shoot(page, "data");
      });

      await t.step("the outputs of a finished task download as a zip, the token never in a URL", async () => {
        await page.goto(`${base}/tasks/${outputsId}`);
        await page.locator("#task-state.s-succeeded").waitFor();
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("button", { name: "Download outputs (zip)" }).click(),
        ]);
        assert.equal(download.suggestedFilename(), `${outputsId}.zip`);
        assert.match(download.url(), /^blob:/);
        const bytes = await Deno.readFile((await download.path())!);
        assert.ok(bytes.length > 0);
        assert.equal(new TextDecoder().decode(bytes.subarray(0, 2)), "PK", "a zip");
        assert.match(new TextDecoder().decode(bytes), /out-2\.txt/, "holds the outputs");
        await page.locator("#download-status").getByText(/^downloaded \d/).waitFor();
      });

      await t.step("Delete in the task list removes a finished task", async () => {
        const row = rowOf(watcher, outputsId);
        await row.locator(".badge.s-succeeded").waitFor();
        await row.getByRole("button", { name: `Delete task outputs (${outputsId})` }).click();
        await row.waitFor({ state: "detached" });
        assert.equal((await tm.api(`/api/v1/tasks/${outputsId}`)).status, 404);
      });

      await t.step("a 10,000-instance task draws its grid; cancelling colours every cell", async () => {
        const zip = await makeZip({
          "task.toml": `[task]\nname = "wide"\nentrypoint = "run.sh"\ninstances = 10000\n` +
            `[placement]\nlabels = { zone = "nowhere" }\n`,
          "run.sh": "#!/bin/sh\n",
        });
        const res = await submitZip(tm, zip, "wide");
        assert.equal(res.status, 201);
        const { id } = await res.json();
        await page.goto(`${base}/tasks/${id}`);
        await page.locator("#grid[aria-label*='10,000 queued']").waitFor();
        await page.locator("#grid").focus();
        await page.keyboard.press("End");
        await page.locator("#grid-hover").getByText("Instance 9999: queued").waitFor();
        await page.keyboard.press("Enter");
        await page.locator("#instance-title").getByText("Instance 9999").waitFor();
        await page.getByRole("button", { name: "Cancel task" }).click();
        await page.locator("#task-state.s-cancelled").waitFor();
        await page.locator("#grid[aria-label*='10,000 cancelled']").waitFor();
        await page.locator("#grid").focus();
        await page.keyboard.press("Home");
        await page.locator("#grid-hover").getByText("Instance 0: cancelled").waitFor();
        await shoot(page, "task-10000");
      });

      await t.step("the nodes page shows the local node; an admin drains and resumes it", async () => {
        await page.goto(`${base}/nodes`);
        const row = page.locator(`#nodes tr[data-name="local"]`);
        await row.locator(".badge.s-ready").waitFor();
        assert.match(await row.innerText(), /0 \/ 4/);
        await row.getByRole("button", { name: "Drain node local" }).click();
        await row.locator(".badge.s-draining").waitFor();
        // Focus moved to the Resume button that replaced Drain, and heartbeats do not take it away.
        await page.waitForTimeout(1200);
        assert.equal(await page.locator(":focus").getAttribute("aria-label"), "Resume node local");
        await page.keyboard.press("Enter");
        await row.locator(".badge.s-ready").waitFor();
        await waitUntil(async () => /just now|\d s ago/.test(await row.locator(".cell-seen").innerText()));
        await shoot(page, "nodes");
      });

      await t.step("signing out forgets the token", async () => {
        await page.getByRole("button", { name: "Sign out" }).click();
        await page.waitForURL(/\/signin/);
        assert.equal(await page.evaluate(() => sessionStorage.getItem("parallelic.token")), null);
      });

      assert.deepEqual(errors, [], "no console errors");
    } finally {
      await browser.close();
    }
  },
});

Deno.test({
  name: "web UI: rerun failed, one instance and finalize; change priority, hold and release (with confirms)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    const dir = await Deno.makeTempDir({ prefix: "parallelic-ui-" });
    const base = tm.manager.url;
    const browser = await launch();
    const errors: string[] = [];
    const dialogs: string[] = [];
    try {
      const page = await browser.newPage({ viewport: DESKTOP });
      page.on("console", (m) => void (m.type() === "error" && errors.push(`${page.url()}: ${m.text()}`)));
      page.on("pageerror", (e) => errors.push(`${page.url()}: uncaught ${e.message}`));
      // Every confirm is accepted; the priority prompt is answered 80.
      page.on("dialog", (d) => {
        dialogs.push(d.message());
        void d.accept(d.type() === "prompt" ? "80" : undefined);
      });
      page.setDefaultTimeout(20_000);
      const zip = await makeZip({
        "task.toml":
          `[task]\nname = "render"\nentrypoint = "render.sh"\ninstances = 3\n[env]\nFIXED = "${dir}/fixed"\n` +
          `[finalize]\nentrypoint = "assemble.sh"\n`,
        "render.sh": `#!/bin/sh\nif [ "$PARALLELIC_INSTANCE" = 2 ] && [ ! -e "$FIXED" ]; then exit 9; fi\n`,
        "assemble.sh": "#!/bin/sh\n",
      });
      const { id } = await (await submitZip(tm, zip, "render")).json();
      assert.equal((await tm.waitForTask(id)).state, "failed");
      await signIn(page, base, `/tasks/${id}`);
      await page.locator("#task-state.s-failed").waitFor();
      assert.equal(await page.locator("#rerun-finalize").isHidden(), true, "not while an instance failed");
      assert.equal(await page.locator("#hold").isHidden(), true, "an ended task is not held");
      await Deno.writeTextFile(join(dir, "fixed"), "");
      await page.getByRole("button", { name: "Rerun failed" }).click();
      await page.locator("#task-state.s-succeeded").waitFor();
      await page.locator("#timing").getByText("Reruns").waitFor();
      assert.match(dialogs.at(-1)!, /^Rerun every instance of render that did not succeed\?/);

      await page.getByLabel("Instance number").fill("1");
      await page.getByRole("button", { name: "Open", exact: true }).click();
      await page.locator("#instance-facts .badge.s-succeeded").waitFor();
      await page.getByRole("button", { name: "Rerun instance 1" }).click();
      await waitUntil(async () => (await tm.api(`/api/v1/tasks/${id}`).then((r) => r.json())).reruns === 2);
      await page.locator("#task-state.s-succeeded").waitFor();
      await page.getByRole("button", { name: "Rerun finalize" }).click();
      await waitUntil(async () => {
        const t = await tm.api(`/api/v1/tasks/${id}`).then((r) => r.json());
        return t.reruns === 3 && t.state === "succeeded";
      });
      await shoot(page, "task-rerun");

      const gate = join(dir, "gate");
      const held = await makeZip({
        "task.toml": `[task]\nname = "waits"\nentrypoint = "run.sh"\ninstances = 6\n[env]\nGATE = "${gate}"\n`,
        "run.sh": `#!/bin/sh\nwhile [ ! -e "$GATE" ]; do sleep 0.05; done\n`,
      });
      const waits = (await (await submitZip(tm, held, "waits")).json()).id;
      await page.goto(`${base}/tasks/${waits}`);
      await page.locator("#task-state.s-running").waitFor();
      await page.getByRole("button", { name: "Change priority" }).click();
      await page.locator("#timing").getByText(/^80$/).waitFor();
      await page.getByRole("button", { name: "Hold" }).click();
      await page.locator("#timing").getByText("80 (held: nothing new starts)").waitFor();
      await page.getByRole("button", { name: "Release" }).waitFor();
      assert.equal((await tm.api(`/api/v1/tasks/${waits}`).then((r) => r.json())).held, true);
      await shoot(page, "task-held");
      await page.getByRole("button", { name: "Release" }).click();
      await page.getByRole("button", { name: "Hold" }).waitFor();
      await Deno.writeTextFile(gate, "");
      await page.locator("#task-state.s-succeeded").waitFor();
      assert.deepEqual(
        dialogs.slice(3).map((m) => m.split(" ")[0]),
        ["Priority", "Hold", "Release"],
        "each change asked first",
      );
      assert.deepEqual(errors, [], "no console errors");
    } finally {
      await browser.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
