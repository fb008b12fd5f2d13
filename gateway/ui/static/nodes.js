/** Nodes: capacity, use, labels and heartbeats, live; drain and resume for admins. */
import { apiJson, badge, everySecond, formatAge, formatBytes, h, liveEvents, may, startPage } from "./common.js";

const who = await startPage();
const tbody = document.querySelector("#nodes tbody");
const empty = document.getElementById("empty");
const listError = document.getElementById("list-error");

/** Nodes by name. */
const nodes = new Map();
let loaded = false;
let pending = [];

function drainButton(node) {
  if (!may(who, "admin") || node.state === "lost") return null;
  const verb = node.drain ? "resume" : "drain";
  const error = h("span", { class: "error", role: "alert" });
  const button = h("button", {
    type: "button",
    class: "small",
    "aria-label": `${node.drain ? "Resume" : "Drain"} node ${node.name}`,
    onclick: async () => {
      button.disabled = true;
      error.textContent = "";
      try {
        const reply = await apiJson(`/api/v1/nodes/${encodeURIComponent(node.name)}/${verb}`, { method: "POST" });
        upsert(reply.node);
        document.querySelector(`tr[data-name="${CSS.escape(node.name)}"] .cell-actions button`)?.focus();
      } catch (e) {
        error.textContent = e.message;
        button.disabled = false;
      }
    },
  }, node.drain ? "Resume" : "Drain");
  return h("div", {}, button, error);
}

function slots(node) {
  const bar = h("div", { class: "bar", role: "img", "aria-label": `${node.usedSlots} of ${node.slots} slots in use` });
  const used = h("span", { class: "seg-running" });
  used.style.width = `${(100 * Math.min(node.usedSlots, node.slots)) / node.slots}%`;
  bar.append(used);
  return h("div", { class: "progress" }, bar, h("span", { class: "sub" }, `${node.usedSlots} / ${node.slots}`));
}

function row(node) {
  const labels = Object.entries(node.labels).map(([k, v]) => h("code", {}, `${k}=${v}`));
  return h(
    "tr",
    { dataset: { name: node.name } },
    h(
      "td",
      { class: "cell-main" },
      h("strong", {}, node.name),
      h("span", { class: "sub" }, `${node.hostname} · v${node.version}`),
    ),
    h("td", { "data-label": "State" }, badge(node.state)),
    h("td", { "data-label": "Slots used", class: "cell-progress" }, slots(node)),
    h("td", { "data-label": "CPUs" }, String(node.cpus)),
    h("td", { "data-label": "Memory" }, formatBytes(node.memoryBytes)),
    h("td", { "data-label": "GPUs" }, String(node.gpus)),
    h("td", { "data-label": "Labels" }, labels.length ? labels.flatMap((l, i) => (i ? [" ", l] : [l])) : "–"),
    h("td", { "data-label": "Last heartbeat", class: "cell-seen" }, formatAge(node.lastSeenAt)),
    h("td", { class: "cell-actions" }, drainButton(node)),
  );
}

function upsert(node) {
  nodes.set(node.name, node);
  const tr = row(node);
  const old = tbody.querySelector(`tr[data-name="${CSS.escape(node.name)}"]`);
  if (old) old.replaceWith(tr);
  else tbody.append(tr);
  empty.hidden = nodes.size > 0;
}

function apply(kind, data) {
  if (kind === "node") upsert(data.node);
  if (kind === "heartbeats") {
    for (const beat of data.nodes) {
      const node = nodes.get(beat.name);
      if (!node) continue;
      const changed = node.usedSlots !== beat.usedSlots;
      node.usedSlots = beat.usedSlots;
      node.lastSeenAt = beat.seenAt;
      if (changed) upsert(node);
    }
  }
}

async function load() {
  loaded = false;
  listError.textContent = "";
  try {
    const reply = await apiJson("/api/v1/nodes");
    nodes.clear();
    tbody.replaceChildren();
    for (const node of reply.nodes.sort((a, b) => a.name.localeCompare(b.name))) upsert(node);
    empty.hidden = nodes.size > 0;
  } catch (e) {
    listError.textContent = e.message;
  }
  loaded = true;
  for (const [kind, data] of pending) apply(kind, data);
  pending = [];
}

liveEvents({ topics: "nodes" }, {
  onReady: load,
  onEvent(kind, data) {
    if (loaded) apply(kind, data);
    else pending.push([kind, data]);
  },
});

everySecond(() => {
  for (const tr of tbody.children) {
    const node = nodes.get(tr.dataset.name);
    if (node) tr.querySelector(".cell-seen").textContent = formatAge(node.lastSeenAt);
  }
});
