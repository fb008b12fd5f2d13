/** Tasks: a live list, newest first, with progress, filter by state, cancel and delete. */
import {
  api,
  apiJson,
  badge,
  deleteTask,
  everySecond,
  FINAL,
  formatAge,
  formatCount,
  h,
  liveEvents,
  may,
  mayDelete,
  progressBar,
  reportError,
  runTime,
  startPage,
} from "./common.js";

const who = await startPage();
const tbody = document.querySelector("#tasks tbody");
const empty = document.getElementById("empty");
const filter = document.getElementById("state-filter");
const listError = document.getElementById("list-error");
const LIMIT = 200;
const search = document.getElementById("task-search");
/** How many rows live updates may keep: a page, and each older page asked for. */
let keep = LIMIT;
/** Where the next older page starts, or null. */
let nextBefore = null;
/** How many tasks the filter holds in all (from the API's counters), or null (a search is not counted). */
let total = null;

/** The tasks shown, by id: the last known view of each. */
const shown = new Map();
/** Tasks deleted from this page: a late event must not bring them back. */
const deleted = new Set();
let loaded = false;
let pending = [];

filter.value = new URLSearchParams(location.search).get("state") ?? "";
search.value = new URLSearchParams(location.search).get("q") ?? "";
function refilter() {
  const url = new URL(location.href);
  for (const [name, value] of [["state", filter.value], ["q", search.value.trim()]]) {
    if (value) url.searchParams.set(name, value);
    else url.searchParams.delete(name);
  }
  history.replaceState(null, "", url);
  void load();
}
filter.addEventListener("change", refilter);
let searchTimer = 0;
search.addEventListener("input", () => {
  clearTimeout(searchTimer);
  searchTimer = setTimeout(refilter, 300);
});

/** Does a task match the search (as the API's `q`: each word in its name or owner, or starting its id)? */
function matchesSearch(t) {
  const text = `${t.name} ${t.owner}`.toLowerCase();
  const id = t.id ?? t.taskId;
  return search.value.toLowerCase().split(/\s+/).filter(Boolean).every((w) => text.includes(w) || id.startsWith(w));
}

/** Says what the list holds, or, when empty, that nothing matches the filter and search. */
function renderEmpty() {
  const filtered = filter.value !== "" || search.value.trim() !== "";
  empty.hidden = shown.size > 0 || filtered;
  const none = document.getElementById("empty-filtered");
  none.hidden = shown.size > 0 || !filtered;
  const q = search.value.trim();
  none.textContent = `No ${filter.value ? `${filter.value} ` : ""}tasks${q ? ` matching “${q}”` : ""}.`;
  const n = shown.size;
  const all = total === null ? null : Math.max(total, n);
  // Said at the foot of the list (read out), and shown under the heading.
  document.getElementById("list-range").textContent = document.getElementById("list-count").textContent = !n
    ? ""
    : all !== null
    ? `${n === 1 ? "1" : `1–${formatCount(n)}`} of ${formatCount(all)} task${all === 1 ? "" : "s"}`
    : `${formatCount(n)} task${n === 1 ? "" : "s"} shown${nextBefore ? ", more older" : ""}`;
  document.getElementById("older").hidden = !nextBefore;
}

const done = (t) => t.counts.succeeded + t.counts.failed + t.counts.cancelled;

/** Is `next` at least as recent as `prev`? (An event may predate the list it is applied to.) */
function newer(prev, next) {
  if (FINAL.has(prev.state) && !FINAL.has(next.state)) return false;
  return done(next) >= done(prev);
}

function cancelButton(task) {
  if (FINAL.has(task.state) || !may(who, "submitter")) return null;
  const error = h("span", { class: "error", role: "alert" });
  const button = h("button", {
    type: "button",
    class: "danger small",
    "aria-label": `Cancel task ${task.name} (${task.id})`,
    onclick: async () => {
      if (!confirm(`Cancel task ${task.name} (${task.id})? Its running instances are stopped.`)) return;
      button.disabled = true;
      error.textContent = "";
      try {
        await api(`/api/v1/tasks/${task.id}/cancel`, { method: "POST" });
      } catch (e) {
        error.textContent = e.message;
        button.disabled = false;
      }
    },
  }, "Cancel");
  return h("div", {}, button, error);
}

function deleteButton(task) {
  if (!mayDelete(who, task)) return null;
  const error = h("span", { class: "error", role: "alert" });
  const button = h("button", {
    type: "button",
    class: "danger small",
    "aria-label": `Delete task ${task.name} (${task.id})`,
    onclick: async () => {
      button.disabled = true;
      error.textContent = "";
      try {
        if (await deleteTask(task)) forget(task.id);
        else button.disabled = false;
      } catch (e) {
        error.textContent = e.message;
        button.disabled = false;
      }
    },
  }, "Delete");
  return h("div", {}, button, error);
}

/** Takes a task off the list (it was deleted). */
function forget(id) {
  shown.delete(id);
  deleted.add(id);
  if (total !== null) total = Math.max(0, total - 1);
  tbody.querySelector(`tr[data-id="${id}"]`)?.remove();
  renderEmpty();
}

function row(task) {
  return h(
    "tr",
    { dataset: { id: task.id } },
    h(
      "td",
      { class: "cell-main" },
      h("a", { href: `/tasks/${task.id}` }, task.name),
      h("span", { class: "sub mono" }, task.id),
    ),
    h("td", { "data-label": "State", class: "cell-state" }),
    h("td", { "data-label": "Owner" }, task.owner),
    h("td", { "data-label": "Progress", class: "cell-progress" }),
    h("td", { "data-label": "Age", class: "cell-age" }),
    h("td", { "data-label": "Duration", class: "cell-duration" }),
    h("td", { class: "cell-actions" }),
  );
}

/** Updates a row in place, so that keyboard focus on its link or button stays where it is. */
function render(task, prev = null, flash = false) {
  let tr = tbody.querySelector(`tr[data-id="${task.id}"]`);
  if (!tr) tbody.prepend(tr = row(task));
  const cell = (name) => tr.querySelector(`.cell-${name}`);
  if (prev?.state !== task.state) {
    cell("state").replaceChildren(badge(task.state));
    if (flash) {
      tr.classList.remove("flash");
      void tr.offsetWidth; // restarts the animation
      tr.classList.add("flash");
    }
  }
  cell("progress").replaceChildren(
    h(
      "div",
      { class: "progress" },
      progressBar(task.counts, task.instances),
      h(
        "span",
        { class: "sub" },
        `${formatCount(done(task))} / ${formatCount(task.instances)} done · ${
          formatCount(task.counts.running)
        } running`,
      ),
    ),
  );
  cell("age").textContent = formatAge(task.createdAt);
  cell("duration").textContent = runTime(task.startedAt, task.endedAt);
  if (!prev || FINAL.has(prev.state) !== FINAL.has(task.state)) {
    cell("actions").replaceChildren(cancelButton(task) ?? deleteButton(task) ?? "");
  }
  renderEmpty();
}

/** Reads the total again (the counters cost one read per state and owner), at most once every 2 s. */
let totalTimer = 0;
function recount() {
  if (totalTimer || total === null) return;
  totalTimer = setTimeout(async () => {
    totalTimer = 0;
    try {
      const reply = await apiJson(`/api/v1/tasks?${listQuery(undefined, 1)}`);
      if (total !== null) total = reply.total;
      renderEmpty();
    } catch { /* the banner says when the manager is unreachable; the count stays as it was */ }
  }, 2000);
}

function apply(event) {
  const prev = shown.get(event.taskId);
  // A task new to the list, or one changing state under a state filter, changes the total.
  if (!prev || (filter.value && prev.state !== event.state)) recount();
  if (deleted.has(event.taskId) || (prev && !newer(prev, event))) return;
  if (!prev && filter.value && event.state !== filter.value) return;
  if (!prev && !matchesSearch(event)) return;
  const task = { ...prev, ...event, id: event.taskId };
  shown.set(task.id, task);
  render(task, prev ?? null, true);
  while (shown.size > keep) {
    const last = tbody.lastElementChild;
    shown.delete(last.dataset.id);
    last.remove();
  }
}

function listQuery(before, limit = LIMIT) {
  const query = new URLSearchParams({ limit: String(limit) });
  if (filter.value) query.set("state", filter.value);
  if (search.value.trim()) query.set("q", search.value.trim());
  if (before) query.set("before", before);
  return query;
}

/** Adds the next older page below the list. */
document.getElementById("older").addEventListener("click", async (e) => {
  const button = e.currentTarget;
  button.disabled = true;
  try {
    const { tasks, next } = await apiJson(`/api/v1/tasks?${listQuery(nextBefore)}`);
    keep += LIMIT;
    nextBefore = next;
    for (const t of tasks) {
      if (shown.has(t.id) || deleted.has(t.id)) continue;
      shown.set(t.id, t);
      tbody.append(row(t));
      render(t, null);
    }
    renderEmpty();
  } catch (err) {
    listError.textContent = err.message;
  } finally {
    button.disabled = false;
  }
});

async function load() {
  loaded = false;
  listError.textContent = "";
  try {
    const reply = await apiJson(`/api/v1/tasks?${listQuery()}`);
    const { tasks, next } = reply;
    shown.clear();
    tbody.replaceChildren();
    keep = LIMIT;
    nextBefore = next;
    total = reply.total ?? null;
    for (const t of tasks.reverse()) {
      shown.set(t.id, t);
      render(t);
    }
    renderEmpty();
  } catch (e) {
    listError.textContent = e.message;
  }
  loaded = true;
  for (const e of pending) apply(e);
  pending = [];
}

liveEvents({ topics: "tasks" }, {
  onReady: load,
  onEvent(kind, data) {
    if (kind !== "task") return;
    if (loaded) apply(data);
    else pending.push(data);
  },
});

everySecond(() => {
  try {
    for (const tr of tbody.children) {
      const t = shown.get(tr.dataset.id);
      if (!t) continue;
      tr.querySelector(".cell-age").textContent = formatAge(t.createdAt);
      if (!FINAL.has(t.state)) tr.querySelector(".cell-duration").textContent = runTime(t.startedAt, t.endedAt);
    }
  } catch (e) {
    reportError(e);
  }
});
