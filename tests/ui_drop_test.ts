/**
 * Drag and drop on the submit page, end to end in headless Chromium: a zip
 * is taken as it is; a folder is read entry by entry and zipped exactly as
 * the folder picker zips it (same digest, .parallelicignore obeyed); the
 * zone shows when something is dragged over the page.
 *
 * A DataTransfer made by a script gives no file system entries in Chromium
 * (webkitGetAsEntry answers null), so the folder is handed to the page as
 * the entries a real folder drop gives: directories whose readers answer in
 * batches, files that give their File.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { sha256Digest } from "../core/package.ts";
import { makeZip, tempDir } from "./kit/mod.ts";
import { docShot, opts, signIn, watchedPage, withUi } from "./kit/ui.ts";

const FOLDER: Record<string, string> = {
  "task.toml": `[task]\nname = "dropped"\nentrypoint = "run.sh"\ninstances = 3\n`,
  "run.sh": "#!/bin/sh\necho hi\n",
  ".parallelicignore": "renders/\n*.tmp\n",
  "renders/big.exr": "not sent",
  "scene/a.blend": "a",
  "scene/b.tmp": "left out",
};

/** Runs in the page: drops the folder `files` (path → text) holds, as the entries a real folder drop gives. */
const DROP_FOLDER = `(files) => {
  const fileEntry = (path, text) => ({
    isFile: true,
    isDirectory: false,
    name: path.split("/").pop(),
    fullPath: "/" + path,
    file: (ok) => setTimeout(() => ok(new File([text], path.split("/").pop()))),
  });
  const dirEntry = (path) => {
    const children = new Map();
    for (const [p, text] of Object.entries(files)) {
      if (!p.startsWith(path + "/")) continue;
      const rest = p.slice(path.length + 1).split("/");
      const child = path + "/" + rest[0];
      if (!children.has(child)) children.set(child, rest.length === 1 ? fileEntry(child, text) : dirEntry(child));
    }
    return {
      isFile: false,
      isDirectory: true,
      name: path.split("/").pop(),
      fullPath: "/" + path,
      createReader: () => {
        // Two entries a batch, then an empty batch: as Chromium answers a large folder, in parts.
        const left = [...children.values()];
        return { readEntries: (ok) => setTimeout(() => ok(left.splice(0, 2))) };
      },
    };
  };
  const root = dirEntry("dropped");
  const original = DataTransferItem.prototype.webkitGetAsEntry;
  DataTransferItem.prototype.webkitGetAsEntry = () => root;
  const dt = new DataTransfer();
  dt.items.add(new File([""], "dropped"));
  document.getElementById("drop").dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }));
  DataTransferItem.prototype.webkitGetAsEntry = original;
}`;

Deno.test({
  name: "web UI: dropping a zip or a folder on the submit page checks it, zipped as the folder picker does",
  ...opts,
  fn: (t) =>
    withUi(0, async ({ base, browser, errors }) => {
      const page = await watchedPage(browser, errors);
      await signIn(page, base, "/submit");
      const checked = () => page.waitForResponse((r) => r.url().includes("/api/v1/packages/check"));

      await t.step("dragging files over the page shows the drop zone", async () => {
        await page.evaluate(`(() => {
          const dt = new DataTransfer();
          dt.items.add(new File(["x"], "x.zip"));
          document.body.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true }));
        })()`);
        await page.locator("#drop.over").waitFor();
        assert.equal(await page.locator("#drop-hint").innerText(), "Release to take it.");
        await docShot(page, "submit-drop", 520);
        await page.evaluate(`document.body.dispatchEvent(new DragEvent("dragleave", { bubbles: true }))`);
        await page.locator("#drop:not(.over)").waitFor();
      });

      await t.step("a dropped zip is sent as it is", async () => {
        const zip = await makeZip({ "task.toml": `[task]\nname = "zipped"\ncommand = "true"\n` });
        const response = checked();
        await page.evaluate(`((bytes) => {
          const dt = new DataTransfer();
          dt.items.add(new File([new Uint8Array(bytes)], "zipped.zip", { type: "application/zip" }));
          document.getElementById("drop").dispatchEvent(
            new DragEvent("drop", { dataTransfer: dt, bubbles: true, cancelable: true }),
          );
        })(${JSON.stringify([...zip])})`);
        assert.equal((await (await response).json()).digest, await sha256Digest(zip), "the zip's own bytes");
        await page.locator("#summary-title").getByText("zipped").waitFor();
        assert.equal(await page.getByRole("button", { name: "Submit task" }).isEnabled(), true);
      });

      await using dir = await tempDir("parallelic-drop-");
      const folder = join(dir.path, "dropped");
      for (const [path, text] of Object.entries(FOLDER)) {
        await Deno.mkdir(join(folder, path, ".."), { recursive: true });
        await Deno.writeTextFile(join(folder, path), text);
      }

      let picked = "";
      await t.step("the folder picker, for comparison", async () => {
        const response = checked();
        await page.getByLabel("Task folder").setInputFiles(folder);
        picked = (await (await response).json()).digest;
        assert.match(picked, /^sha256-[0-9a-f]{64}$/);
      });

      await t.step("a dropped folder is read recursively and zipped the same way", async () => {
        await page.reload();
        await page.locator("#who").getByText("admin (admin)").waitFor();
        const response = checked();
        const files = Object.fromEntries(Object.entries(FOLDER).map(([p, text]) => [`dropped/${p}`, text]));
        await page.evaluate(`(${DROP_FOLDER})(${JSON.stringify(files)})`);
        const dropped = (await (await response).json()).digest;
        assert.equal(dropped, picked, "the same package as the folder picker's");
        await page.locator("#summary-title").getByText("dropped").waitFor();
        assert.match(await page.locator("#pick-status").innerText(), /^dropped: 4 files, 2 left out/);
      });
    }),
});
