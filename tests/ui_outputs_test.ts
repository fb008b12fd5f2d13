/**
 * The task page's outputs end to end in headless Chromium: a render of 30
 * frames (PNGs, one of them broken) pinned to a data set and waiting for an
 * upstream task, with a finalize and a task waiting for it. The finalize
 * card (state, outputs, its log in the details panel), the data and [after]
 * links, the outputs browser with sizes and downloads, previews (a
 * placeholder for the broken frame) and the contact sheet of the latest
 * frames are checked, and the routes behind them: sizes, ETags, access.
 */
import assert from "node:assert/strict";
import { findMagick } from "../gateway/preview.ts";
import { addApiUser, makeZip, submitZip, type TestManager } from "./kit/mod.ts";
import { makePng, pngSize } from "./kit/png.ts";
import { docShot, docShotFrom, opts, shoot, signIn, watchedPage, withUi } from "./kit/ui.ts";

const base64 = (bytes: Uint8Array) => btoa(Array.from(bytes, (b) => String.fromCharCode(b)).join(""));
const COLOURS = [[196, 64, 52], [52, 120, 196], [232, 176, 40], [72, 160, 88]];

async function submit(tm: TestManager, files: Record<string, string>, name: string): Promise<string> {
  const res = await submitZip(tm, await makeZip(files), name);
  assert.equal(res.status, 201, await res.clone().text());
  return (await res.json()).id;
}

Deno.test({
  name: "web UI: outputs with sizes, previews, a contact sheet, finalize as a step, data and [after] links",
  ...opts,
  fn: (t) =>
    withUi(2, async ({ tm, base, browser, errors }) => {
      const magick = await findMagick();
      const put = await tm.api("/api/v1/data/textures?file=wood.txt", {
        method: "POST",
        headers: { "content-type": "application/octet-stream" },
        body: new TextEncoder().encode("oak\n"),
      });
      assert.equal(put.status, 201);
      const version: string = (await put.json()).version;
      const plates = await submit(tm, {
        "task.toml": `[task]\nname = "plates"\ncommand = "echo plate > $PARALLELIC_OUTPUT/plate.txt"\n`,
      }, "plates");
      assert.equal((await tm.waitForTask(plates, 30_000)).state, "succeeded");

      const pngs: Record<string, string> = {};
      for (const [k, c] of COLOURS.entries()) pngs[`c${k}.b64`] = base64(await makePng(320, 180, c));
      const shots = await submit(tm, {
        "task.toml": `[task]\nname = "shots"\nentrypoint = "render.sh"\ninstances = 30\n` +
          `[data]\ntextures = "textures"\n[after]\ntasks = ["${plates}"]\n` +
          `[finalize]\ncommand = "ls $PARALLELIC_WORKSPACE | wc -l > $PARALLELIC_OUTPUT/summary.txt; ` +
          `echo assembled the frames"\n`,
        "render.sh": `#!/bin/sh\ni=$PARALLELIC_INSTANCE\nf=$PARALLELIC_OUTPUT/frame_$(printf %04d $i).png\n` +
          `if [ $i -eq 27 ]; then echo "not a picture" > "$f"; else base64 -d c$((i % 4)).b64 > "$f"; fi\n` +
          `head -c 12345 /dev/zero > "$PARALLELIC_OUTPUT/cache.bin"\necho "rendered frame $i"\n`,
        ...pngs,
      }, "shots");
      const comp = await submit(tm, {
        "task.toml": `[task]\nname = "comp"\ncommand = "true"\n[after]\ntasks = ["${shots}"]\n`,
      }, "comp");
      assert.equal((await tm.waitForTask(shots, 60_000)).state, "succeeded");

      const page = await watchedPage(browser, errors);
      await signIn(page, base, `/tasks/${shots}`);

      await t.step("finalize is its own step: state, outputs, and its log in the details panel", async () => {
        const card = page.locator("#finalize");
        await card.locator(".badge.s-succeeded").waitFor();
        await card.locator("tr[data-path='summary.txt']").waitFor();
        assert.match(await card.locator("tr[data-path='summary.txt']").innerText(), /summary\.txt\s+3 B/);
        assert.match(await card.locator(".outputs-total").innerText(), /^1 file, 3 B$/);
        await card.getByRole("button", { name: "Show its log" }).click();
        await page.locator("#instance-title").getByText("Finalize", { exact: true }).waitFor();
        await page.locator("#log").getByText("assembled the frames").waitFor();
        assert.equal(new URL(page.url()).hash, "#i=finalize");
        await page.locator("#instance-outputs tr[data-path='summary.txt']").waitFor();
      });

      await t.step("the data set version pinned and the tasks before and after it, linked", async () => {
        const related = page.locator("#related");
        const data = related.getByRole("link", { name: `textures@${version.slice(0, 15)}…` });
        assert.equal(await data.getAttribute("href"), "/data#set-textures");
        assert.match(await related.innerText(), /PARALLELIC_DATA_TEXTURES/);
        assert.equal(await related.getByRole("link", { name: "plates" }).getAttribute("href"), `/tasks/${plates}`);
        assert.equal(await related.getByRole("link", { name: "comp" }).getAttribute("href"), `/tasks/${comp}`);
        assert.match(await related.innerText(), /After \(once they succeeded\)\s+plates/);
      });

      await t.step("the contact sheet shows the latest 24 frames, loading only what is in view", async () => {
        const tiles = page.locator("#frames .tile");
        await page.locator("#frames").waitFor();
        await tiles.nth(23).waitFor({ state: "attached" });
        assert.equal(await tiles.count(), 24);
        assert.equal(await tiles.first().getAttribute("data-index"), "29");
        assert.equal(await tiles.last().getAttribute("data-index"), "6");
        await page.locator("#frames").scrollIntoViewIfNeeded();
        const img = page.locator("#frames .tile[data-index='28'] img");
        await img.waitFor();
        const size = await img.evaluate((
          el,
        ) => [(el as unknown as { naturalWidth: number }).naturalWidth, el.getAttribute("alt")]);
        if (magick) assert.equal(size[0], 160, "scaled down to 160 px");
        assert.equal(size[1], "Instance 28: preview of its first image output");
        const broken = page.locator("#frames .tile[data-index='27'] img");
        await broken.waitFor();
        if (magick) assert.match(await broken.getAttribute("alt") ?? "", /^No preview of 'frame_0027\.png'/);
      });

      await t.step("an instance's outputs with sizes, a preview, and a download of one file", async () => {
        await page.getByRole("button", { name: "Open instance 12" }).click();
        await page.locator("#instance-title").getByText("Instance 12", { exact: true }).waitFor();
        const rows = page.locator("#instance-outputs tbody tr");
        await rows.nth(1).waitFor();
        assert.match(
          await page.locator("#instance-outputs tr[data-path='cache.bin']").innerText(),
          /12 KiB \(12,345 bytes\)/,
        );
        assert.match(await page.locator("#instance-outputs .outputs-total").innerText(), /^2 files, /);
        const thumb = page.locator("#instance-preview img");
        await thumb.waitFor();
        assert.equal(
          await thumb.getAttribute("alt"),
          "Preview of frame_0012.png, the first image output of instance 12",
        );
        const [download] = await Promise.all([
          page.waitForEvent("download"),
          page.getByRole("button", { name: "Download frame_0012.png" }).click(),
        ]);
        assert.equal(download.suggestedFilename(), "frame_0012.png");
        assert.deepEqual(pngSize(await Deno.readFile((await download.path())!)), { width: 320, height: 180 });
        await page.locator("#instance-preview").scrollIntoViewIfNeeded();
        await docShot(page, "finalize", 700);
        await docShotFrom(page, "#frames", "outputs", 1300);
        await shoot(page, "task-outputs");
      });

      await t.step("previews are scaled, cached by ETag, and shown only to those who may see the task", async () => {
        const url = `/api/v1/tasks/${shots}/instances/3/preview?max=64`;
        const res = await tm.api(url);
        assert.equal(res.status, 200);
        const etag = res.headers.get("etag")!;
        assert.match(res.headers.get("cache-control") ?? "", /private/);
        const bytes = new Uint8Array(await res.arrayBuffer());
        if (magick) assert.deepEqual(pngSize(bytes), { width: 64, height: 36 });
        const again = await tm.api(url, { headers: { "if-none-match": etag } });
        assert.equal(again.status, 304);
        await again.body?.cancel();
        const broken = await tm.api(`/api/v1/tasks/${shots}/instances/27/preview`);
        assert.equal(broken.status, 200, "a broken image gets a placeholder, not an error");
        if (magick) {
          assert.equal(broken.headers.get("content-type"), "image/svg+xml");
          assert.match(decodeURIComponent(broken.headers.get("parallelic-preview") ?? ""), /could not read it/);
        }
        await broken.body?.cancel();
        const none = await tm.api(`/api/v1/tasks/${plates}/instances/0/preview`);
        assert.equal(none.status, 404);
        assert.equal((await none.json()).error.code, "no_image_output");
        const other = await addApiUser(tm, "other");
        for (const path of ["preview", "outputs", "output?path=cache.bin"]) {
          const res = await tm.api(`/api/v1/tasks/${shots}/instances/3/${path}`, { token: other });
          assert.equal(res.status, 404, `${path}: another submitter's task is not found`);
          await res.body?.cancel();
        }
        const bad = await tm.api(`/api/v1/tasks/${shots}/instances/3/output?path=../x`);
        assert.equal(bad.status, 400);
        await bad.body?.cancel();
      });
    }),
});
