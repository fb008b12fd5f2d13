/**
 * The failure list of the task page: every failed instance (index, params,
 * exit code or "timed out", node, last stderr line), a page of rows at a
 * time, with next and previous failure. Read from the API's failure index
 * (`state=failed`), never by scanning instances; reloads are coalesced and
 * spaced so that a burst of failures costs one read a second.
 */
import { apiJson, formatCount, h } from "./common.js";

const ROWS_PER_PAGE = 100;
const API_PAGE = 1000;
const MIN_RELOAD_GAP_MS = 1000;

/** Did the instance's last attempt run out of time? */
export const timedOut = (inst) => /timed out/.test(inst.history.at(-1)?.error ?? "");

/** How an attempt ended, in a few words: exit code, "timed out", signal or error. */
export function howItEnded(inst) {
  const last = inst.history.at(-1);
  if (timedOut(inst)) return "timed out";
  if (inst.exitCode !== null) return `exit ${inst.exitCode}`;
  if (inst.signal) return inst.signal;
  return last?.error ?? "–";
}

/**
 * Creates the failure list in `root` (the section holding it) for task
 * `taskId`; `onOpen(index)` opens an instance.
 */
export function createFailureList(root, taskId, { onOpen }) {
  const $ = (sel) => root.querySelector(sel);
  /** Failed instances in index order. */
  let failures = [];
  let current = null;
  let page = 0;
  let loading = null;
  let again = false;
  let lastLoadAt = 0;

  async function readAll() {
    const all = [];
    for (let from = 0; from !== null;) {
      const p = await apiJson(`/api/v1/tasks/${taskId}/instances?state=failed&from=${from}&limit=${API_PAGE}`);
      all.push(...p.instances);
      from = p.next;
    }
    return all;
  }

  /** First position in `failures` whose index is at least `index`. */
  function positionOf(index) {
    let lo = 0;
    let hi = failures.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (failures[mid].index < index) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  function row(inst) {
    const params = Object.entries(inst.params).map(([k, v]) => `${k}=${v}`).join(" ");
    const stderr = inst.history.at(-1)?.lastStderr ?? "";
    return h(
      "tr",
      { dataset: { index: String(inst.index) }, class: inst.index === current ? "current" : "" },
      h(
        "td",
        {},
        h("button", {
          type: "button",
          class: "link",
          "aria-label": `Open failed instance ${inst.index}`,
          onclick: () => onOpen(inst.index),
        }, String(inst.index)),
      ),
      h("td", { class: "mono" }, params || "–"),
      h("td", {}, howItEnded(inst)),
      h("td", {}, inst.node ?? "–"),
      h("td", { class: "mono stderr", title: stderr }, stderr),
    );
  }

  function render() {
    root.hidden = failures.length === 0;
    const pages = Math.max(1, Math.ceil(failures.length / ROWS_PER_PAGE));
    page = Math.min(page, pages - 1);
    const first = page * ROWS_PER_PAGE;
    const shown = failures.slice(first, first + ROWS_PER_PAGE);
    $("tbody").replaceChildren(...shown.map(row));
    $(".failures-range").textContent = failures.length
      ? `${formatCount(first + 1)}–${formatCount(first + shown.length)} of ${formatCount(failures.length)}`
      : "";
    $(".failures-prev-page").disabled = page === 0;
    $(".failures-next-page").disabled = page >= pages - 1;
    renderPosition();
  }

  function renderPosition() {
    const at = current === null ? -1 : positionOf(current);
    const isFailure = at >= 0 && failures[at]?.index === current;
    $(".failures-position").textContent = isFailure
      ? `Failure ${formatCount(at + 1)} of ${formatCount(failures.length)}`
      : `${formatCount(failures.length)} failed`;
    $(".failures-prev").disabled = failures.length === 0 || (current !== null && at === 0);
    $(".failures-next").disabled = failures.length === 0 ||
      (current !== null && (isFailure ? at + 1 : at) >= failures.length);
    for (const tr of root.querySelectorAll("tbody tr")) {
      const isCurrent = Number(tr.dataset.index) === current;
      tr.classList.toggle("current", isCurrent);
      if (isCurrent) scrollIntoBox(tr);
    }
  }

  /** Scrolls the list's box (only) so that `tr` shows below the sticky header. */
  function scrollIntoBox(tr) {
    const box = $(".failures-box");
    const head = $("thead").offsetHeight;
    const top = tr.offsetTop - head;
    if (top < box.scrollTop) box.scrollTop = top;
    else if (tr.offsetTop + tr.offsetHeight > box.scrollTop + box.clientHeight) {
      box.scrollTop = tr.offsetTop + tr.offsetHeight - box.clientHeight;
    }
  }

  /** Opens the next failure after the instance shown (`step` 1) or the one before it (`step` -1). */
  function step(direction) {
    if (failures.length === 0) return;
    let at;
    if (current === null) at = direction > 0 ? 0 : failures.length - 1;
    else {
      const p = positionOf(current);
      at = direction > 0 ? (failures[p]?.index === current ? p + 1 : p) : p - 1;
    }
    if (at < 0 || at >= failures.length) return;
    onOpen(failures[at].index);
  }

  $(".failures-next").addEventListener("click", () => step(1));
  $(".failures-prev").addEventListener("click", () => step(-1));
  $(".failures-next-page").addEventListener("click", () => {
    page++;
    render();
  });
  $(".failures-prev-page").addEventListener("click", () => {
    page--;
    render();
  });
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.target.closest?.("input, textarea, select")) return;
    if (e.key === "n" || e.key === "p") {
      step(e.key === "n" ? 1 : -1);
      e.preventDefault();
    }
  });

  return {
    /** How many failures are listed. */
    get count() {
      return failures.length;
    },
    /**
     * Reads the list again. Calls while one read runs are folded into one
     * more read after it, at least a second after the last.
     */
    async reload() {
      if (loading) {
        again = true;
        return loading;
      }
      loading = (async () => {
        do {
          again = false;
          const wait = lastLoadAt + MIN_RELOAD_GAP_MS - Date.now();
          if (wait > 0) await new Promise((r) => setTimeout(r, wait));
          lastLoadAt = Date.now();
          failures = await readAll();
          render();
        } while (again);
      })();
      try {
        await loading;
      } finally {
        loading = null;
      }
    },
    /** Marks instance `index` as the one shown, turning to its page when it failed. */
    setCurrent(index) {
      current = index;
      const at = positionOf(index);
      if (failures[at]?.index === index && Math.floor(at / ROWS_PER_PAGE) !== page) {
        page = Math.floor(at / ROWS_PER_PAGE);
        render();
      } else renderPosition();
    },
  };
}
