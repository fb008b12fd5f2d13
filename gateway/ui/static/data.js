/**
 * Data: every data set with its versions (newest first), sizes, and the tasks
 * that name it in `[data]` (among the newest tasks this token may see).
 */
import { apiJson, badge, formatAge, formatBytes, h, startPage } from "./common.js";

await startPage();
const tbody = document.querySelector("#datasets tbody");
const empty = document.getElementById("empty");
const listError = document.getElementById("list-error");
const TASKS_LIMIT = 1000;

const short = (version) => `${version.slice(0, 15)}…`;

/** Tasks by the data set versions they pinned at submit: `name@version` → tasks. */
function usesOf(tasks) {
  const uses = new Map();
  for (const t of tasks) {
    for (const { name, version } of Object.values(t.spec.data ?? {})) {
      const key = `${name}@${version}`;
      if (!uses.has(key)) uses.set(key, []);
      if (!uses.get(key).includes(t)) uses.get(key).push(t);
    }
  }
  return uses;
}

function row(set, uses) {
  const versions = [...set.versions].sort((a, b) => b.putAt - a.putAt);
  const users = versions.flatMap((v) => (uses.get(`${set.name}@${v.version}`) ?? []).map((t) => [t, v]));
  return h(
    "tr",
    // `/data#set-NAME` (a task page's link to a data set it pinned) lands here.
    {
      dataset: { name: set.name },
      id: `set-${set.name}`,
      class: location.hash === `#set-${set.name}` ? "target" : null,
    },
    h("td", { class: "cell-main" }, h("strong", {}, set.name)),
    h(
      "td",
      { "data-label": "Versions" },
      h(
        "ul",
        { class: "versions" },
        versions.map((v, i) =>
          h(
            "li",
            {},
            h("code", { title: v.version }, short(v.version)),
            ` ${v.files} ${v.files === 1 ? "file" : "files"}, ${formatBytes(v.bytes)}, put ${
              formatAge(v.putAt)
            } by ${v.owner}`,
            i === 0 ? h("span", { class: "sub" }, " (newest)") : null,
          )
        ),
      ),
    ),
    h("td", { "data-label": "Size", title: "distinct content across its versions" }, formatBytes(set.bytes)),
    h(
      "td",
      { "data-label": "Used by" },
      users.length
        ? h(
          "ul",
          { class: "versions" },
          users.map(([t, v]) =>
            h(
              "li",
              {},
              h("a", { href: `/tasks/${t.id}` }, t.name),
              " ",
              badge(t.state),
              h("span", { class: "sub" }, ` ${short(v.version)}`),
            )
          ),
        )
        : h("span", { class: "muted" }, "no task"),
    ),
  );
}

async function load() {
  listError.textContent = "";
  try {
    const [{ datasets }, { tasks }] = await Promise.all([
      apiJson("/api/v1/data"),
      apiJson(`/api/v1/tasks?limit=${TASKS_LIMIT}`),
    ]);
    const uses = usesOf(tasks);
    tbody.replaceChildren(...datasets.map((set) => row(set, uses)));
    empty.hidden = datasets.length > 0;
    document.querySelector("tr.target")?.scrollIntoView({ block: "center" });
  } catch (e) {
    listError.textContent = e.message;
  }
}

document.getElementById("reload").addEventListener("click", () => void load());
await load();
