/**
 * Image previews: a thumbnail of an instance's first image output in its
 * details panel, and a contact sheet of the latest frames on the task page
 * (the newest succeeded instances), loaded only as they scroll into view, a
 * few at a time. Previews come from the gateway scaled down; the browser
 * keeps them and asks again only whether they changed (ETag). One that
 * cannot be made shows a placeholder saying why.
 */
import { api, apiJson, h } from "./common.js";
import { instancePath } from "./outputs.js";

/** Previews fetched at once. */
const AT_ONCE = 4;
let running = 0;
const queue = [];

/**
 * Fetches a preview, at most {@linkcode AT_ONCE} at a time: its object URL,
 * and why it is a placeholder when it is one (else null).
 */
async function fetchPreview(url) {
  if (running >= AT_ONCE) await new Promise((go) => queue.push(go));
  running++;
  try {
    const res = await api(url, { cache: "no-cache" });
    const none = /^none; (.*)$/.exec(res.headers.get("parallelic-preview") ?? "");
    return { src: URL.createObjectURL(await res.blob()), why: none ? decodeURIComponent(none[1]) : null };
  } finally {
    running--;
    queue.shift()?.();
  }
}

/** A placeholder where a preview cannot be shown, saying why. */
function placeholder(text) {
  return h("div", { class: "thumb-none", role: "img", "aria-label": text }, h("span", {}, text));
}

/**
 * Fills `box` with the preview of an instance's first image (the gateway's
 * placeholder saying why when it has none to show), or a placeholder of its
 * own when the request failed.
 */
export async function showPreview(box, taskId, segment, { max, alt }) {
  const url = `/api/v1/tasks/${taskId}/instances/${segment}/preview?max=${max}`;
  const old = box.querySelector("img")?.src;
  try {
    const { src, why } = await fetchPreview(url);
    const img = h("img", { src, alt: why ?? alt, title: why, decoding: "async" });
    img.addEventListener("load", () => {
      img.width = img.naturalWidth;
      img.height = img.naturalHeight;
    }, { once: true });
    box.replaceChildren(img);
  } catch (e) {
    const p = placeholder(e.code === "no_image_output" ? "no image output" : "no preview");
    p.title = e.message;
    box.replaceChildren(p);
  } finally {
    if (old) URL.revokeObjectURL(old);
  }
}

/** Whether instance `segment` stored an image output. */
async function hasImage(taskId, segment) {
  const view = await apiJson(`/api/v1/tasks/${taskId}/instances/${segment}/outputs`);
  return view.files.some((f) => f.image);
}

/**
 * Creates the contact sheet in `section` (with a `.sheet` list inside):
 * `update(indexes, instances)` shows those instances, newest first; each
 * tile loads once it comes near the viewport. The sheet stays hidden while
 * the newest of them has no image output (a task that renders none).
 * Tiles are buttons: Tab to one and Enter opens its instance.
 */
export function createContactSheet(section, taskId, { onOpen, max = 160 }) {
  const list = section.querySelector(".sheet");
  /** Tiles by instance index. */
  const tiles = new Map();
  let probed = null;
  let updating = Promise.resolve();
  const observer = new IntersectionObserver((entries) => {
    for (const e of entries) {
      if (!e.isIntersecting) continue;
      observer.unobserve(e.target);
      const index = Number(e.target.dataset.index);
      void showPreview(e.target.querySelector(".thumb"), taskId, e.target.dataset.segment, {
        max,
        alt: `Instance ${index}: preview of its first image output`,
      });
    }
  }, { rootMargin: "200px" });

  function tile(index, instances) {
    const segment = instancePath(index, instances);
    const el = h(
      "li",
      { class: "tile", dataset: { index: String(index), segment } },
      h(
        "button",
        { type: "button", class: "tile-open", "aria-label": `Open instance ${index}`, onclick: () => onOpen(index) },
        h("div", { class: "thumb" }, placeholder("loading…")),
        h("span", {}, `Instance ${index}`),
      ),
    );
    observer.observe(el);
    return el;
  }

  return {
    /** Shows instances `indexes` (newest first) of a task of `instances`. */
    update(indexes, instances) {
      // One update at a time, in order.
      updating = updating.then(() => render(indexes, instances)).catch(() => {});
      return updating;
    },
  };

  async function render(indexes, instances) {
    if (indexes.length === 0) return;
    // Whether the task renders images at all: asked of its newest frame until one has an image.
    if (section.hidden) {
      if (probed === indexes[0]) return;
      probed = indexes[0];
      if (!(await hasImage(taskId, instancePath(indexes[0], instances)))) return;
      section.hidden = false;
    }
    const want = new Set(indexes);
    for (const [i, el] of tiles) {
      if (want.has(i)) continue;
      observer.unobserve(el);
      const src = el.querySelector("img")?.src;
      if (src) URL.revokeObjectURL(src);
      el.remove();
      tiles.delete(i);
    }
    const els = indexes.map((i) => tiles.get(i) ?? tiles.set(i, tile(i, instances)).get(i));
    // Moves only what changed place: tiles already loaded keep their images.
    els.forEach((el, k) => {
      if (list.children[k] !== el) list.insertBefore(el, list.children[k] ?? null);
    });
  }
}
