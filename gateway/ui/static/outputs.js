/**
 * An outputs browser: the files an instance (or finalize) stored, each with
 * its size in human units and in bytes, and a download button; the total
 * above them. Read once per attempt shown (outputs change only with one).
 */
import { apiJson, download, formatBytes, formatCount, h } from "./common.js";

/** Size in human units, and the exact bytes with thousands separators: "2.3 MiB (2,411,724 bytes)". */
export const sizeText = (bytes) =>
  bytes < 1024 ? `${formatCount(bytes)} B` : `${formatBytes(bytes)} (${formatCount(bytes)} bytes)`;

/** The path segment of instance `index` of a task of `instances` (finalize is `finalize`). */
export const instancePath = (index, instances) => index === instances ? "finalize" : String(index);

/**
 * Creates an outputs browser in `root` (a `.outputs` element). `show(index,
 * version)` reads the listing unless the same version is shown already.
 */
export function createOutputs(root, taskId, { label }) {
  let shown = null;
  const status = h("p", { class: "muted small outputs-total", role: "status" });
  const body = h("tbody");
  const table = h(
    "table",
    { class: "small-table outputs-table" },
    h("caption", { class: "sr-only" }, label),
    h(
      "thead",
      {},
      h("tr", {}, h("th", { scope: "col" }, "File"), h("th", { scope: "col" }, "Size"), h("th", { scope: "col" }, "")),
    ),
    body,
  );
  root.replaceChildren(status, h("div", { class: "scroll-x" }, table));
  table.hidden = true;

  function row(segment, file) {
    const name = `${file.path.split("/").at(-1)}`;
    const url = `/api/v1/tasks/${taskId}/instances/${segment}/output?path=${encodeURIComponent(file.path)}`;
    const button = h("button", { type: "button", class: "small", "aria-label": `Download ${file.path}` }, "Download");
    button.addEventListener("click", async () => {
      button.disabled = true;
      try {
        await download(url, name);
      } catch (e) {
        status.textContent = e.message;
      } finally {
        button.disabled = false;
      }
    });
    return h(
      "tr",
      { dataset: { path: file.path } },
      h("td", { class: "path" }, h("code", {}, file.path)),
      h("td", { class: "num" }, sizeText(file.size)),
      h("td", {}, button),
    );
  }

  return {
    /** Shows the outputs of `segment` (an index or `finalize`) as of `version` (its attempt); null clears. */
    async show(segment, version) {
      const key = `${segment}@${version}`;
      if (segment === null) {
        shown = null;
        status.textContent = "";
        table.hidden = true;
        return;
      }
      if (shown === key) return;
      shown = key;
      status.textContent = "reading outputs…";
      let view;
      try {
        view = await apiJson(`/api/v1/tasks/${taskId}/instances/${segment}/outputs`);
      } catch (e) {
        if (shown === key) status.textContent = e.message;
        shown = null;
        return;
      }
      if (shown !== key) return;
      const files = `${formatCount(view.count)} file${view.count === 1 ? "" : "s"}`;
      status.textContent = view.count === 0
        ? "No outputs stored."
        : `${files}, ${sizeText(view.totalBytes)}${
          view.truncated ? `; the first ${formatCount(view.files.length)} are listed (download the zip for all)` : ""
        }`;
      body.replaceChildren(...view.files.map((f) => row(segment, f)));
      table.hidden = view.count === 0;
      return view;
    },
  };
}
