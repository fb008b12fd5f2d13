/** The audit log (admins): newest first, filtered by user and action (kept in the URL), 50 a page. */
import { adminOnly } from "./admin.js";
import { apiJson, formatCount, formatTime, h, startPage } from "./common.js";

const $ = (id) => document.getElementById(id);
const who = await startPage();
const PAGE = 50;

if (adminOnly(who)) {
  const tbody = document.querySelector("#audit tbody");
  const listError = $("list-error");
  const empty = $("empty");
  const range = $("audit-range");
  const newer = $("newer");
  const older = $("older");
  const userInput = $("audit-user");
  const actionSelect = $("audit-action");

  const params = new URLSearchParams(location.search);
  userInput.value = params.get("user") ?? "";
  actionSelect.value = params.get("action") ?? "";

  /** Cursors of the pages shown so far: `cursors[i]` reads page i (undefined: the newest). */
  let cursors = [undefined];
  let page = 0;
  let next = null;

  const row = (e) =>
    h(
      "tr",
      {},
      h("td", { class: "cell-main" }, h("time", { datetime: new Date(e.at).toISOString() }, formatTime(e.at))),
      h("td", { "data-label": "Action" }, h("code", {}, e.action)),
      h("td", { "data-label": "User" }, e.user ?? "–"),
      h("td", { "data-label": "Target" }, e.target ?? "–"),
      h("td", { "data-label": "Detail", class: "wrap-any" }, e.detail ?? "–"),
      h("td", { "data-label": "Address" }, e.address),
    );

  const show = async () => {
    listError.textContent = "";
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (userInput.value.trim()) query.set("user", userInput.value.trim());
    if (actionSelect.value) query.set("action", actionSelect.value);
    if (cursors[page]) query.set("cursor", cursors[page]);
    try {
      const reply = await apiJson(`/api/v1/audit?${query}`);
      next = reply.next;
      tbody.replaceChildren(...reply.entries.map(row));
      const from = page * PAGE;
      const filtered = query.has("user") || query.has("action");
      empty.hidden = reply.entries.length > 0;
      empty.textContent = page > 0
        ? "No older entries match."
        : filtered
        ? "No entry matches this filter (the log keeps 90 days)."
        : "The audit log is empty.";
      range.textContent = reply.entries.length
        ? `Entries ${formatCount(from + 1)}–${formatCount(from + reply.entries.length)}, newest first`
        : "";
      newer.disabled = page === 0;
      older.disabled = next === null;
    } catch (e) {
      listError.textContent = e.message;
    }
  };

  const restart = () => {
    cursors = [undefined];
    page = 0;
    const q = new URLSearchParams();
    if (userInput.value.trim()) q.set("user", userInput.value.trim());
    if (actionSelect.value) q.set("action", actionSelect.value);
    history.replaceState(null, "", q.size ? `?${q}` : location.pathname);
    return show();
  };

  $("audit-filter").addEventListener("submit", (e) => {
    e.preventDefault();
    void restart();
  });
  actionSelect.addEventListener("change", () => void restart());
  $("audit-clear").addEventListener("click", () => {
    userInput.value = "";
    actionSelect.value = "";
    void restart();
  });
  older.addEventListener("click", () => {
    if (next === null) return;
    cursors[page + 1] = next;
    page++;
    void show();
  });
  newer.addEventListener("click", () => {
    if (page === 0) return;
    page--;
    void show();
  });

  // The users, to pick from (the log may also name users since removed: typing any name works).
  apiJson("/api/v1/users").then((reply) => {
    $("audit-users").replaceChildren(...reply.users.map((u) => h("option", { value: u.name })));
  }).catch(() => {});

  await show();
}
