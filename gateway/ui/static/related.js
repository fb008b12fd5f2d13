/**
 * What a task is tied to, on its page: the data set versions it pinned
 * (name@version, linked to the Data page), the tasks it waits for
 * (`[after]`) and those that wait for it, each with its state and a link.
 */
import { apiJson, badge, h } from "./common.js";

const shortVersion = (v) => v ? `${v.slice(0, 15)}…` : "latest";

function taskItem(t) {
  if (t.state === null) return h("li", {}, h("code", {}, t.id), " ", h("span", { class: "muted" }, "(not yours)"));
  return h(
    "li",
    {},
    h("a", { href: `/tasks/${t.id}` }, t.name),
    " ",
    h("code", { class: "muted" }, t.id),
    " ",
    badge(t.state),
  );
}

/** Reads and shows what task `taskId` is tied to in `root` (`#related`); hides it when nothing is. */
export async function showRelated(root, taskId) {
  const r = await apiJson(`/api/v1/tasks/${taskId}/related`);
  const rows = [];
  if (r.data.length) {
    rows.push([
      "Data",
      h(
        "ul",
        { class: "plain" },
        ...r.data.map((d) =>
          h(
            "li",
            {},
            h(
              "a",
              { href: `/data#set-${encodeURIComponent(d.name)}`, title: d.version ?? "" },
              `${d.name}@${shortVersion(d.version)}`,
            ),
            " ",
            h("span", { class: "muted small" }, `as PARALLELIC_DATA_${d.key.toUpperCase()}`),
          )
        ),
      ),
    ]);
  }
  if (r.upstream.length) {
    const when = r.when === "ended" ? "once they ended" : "once they succeeded";
    rows.push([`After (${when})`, h("ul", { class: "plain" }, ...r.upstream.map(taskItem))]);
  }
  if (r.dependents.length) rows.push(["Waited for by", h("ul", { class: "plain" }, ...r.dependents.map(taskItem))]);
  root.hidden = rows.length === 0;
  root.querySelector("dl").replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}
