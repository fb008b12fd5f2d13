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
        // The button was replaced (Drain became Resume): keep the focus on its successor.
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

const CELLS = ["main", "state", "slots", "cpus", "memory", "gpus", "labels", "seen", "actions"];
const LABELS = ["", "State", "Slots used", "CPUs", "Memory", "GPUs", "Labels", "Last heartbeat", ""];

function row(node) {
  return h(
    "tr",
    { dataset: { name: node.name } },
    CELLS.map((c, i) => h("td", { class: `cell-${c}`, "data-label": LABELS[i] || null })),
  );
}

/** Shows a node, updating its row in place so that keyboard focus on its button stays. */
function upsert(node) {
  const prev = nodes.get(node.name);
  nodes.set(node.name, node);
  let tr = tbody.querySelector(`tr[data-name="${CSS.escape(node.name)}"]`);
  if (!tr) tbody.append(tr = row(node));
  const cell = (name) => tr.querySelector(`.cell-${name}`);
  const labels = Object.entries(node.labels).map(([k, v]) => h("code", {}, `${k}=${v}`));
  // Rebuilt only when it changes: the link to the node's page keeps keyboard focus through heartbeats.
  if (!prev || prev.hostname !== node.hostname || prev.version !== node.version) {
    cell("main").replaceChildren(
      h("a", { href: `/nodes/${encodeURIComponent(node.name)}` }, h("strong", {}, node.name)),
      h("span", { class: "sub" }, `${node.hostname} · v${node.version}`),
    );
  }
  cell("state").replaceChildren(badge(node.state));
  cell("slots").replaceChildren(slots(node));
  cell("cpus").textContent = String(node.cpus);
  cell("memory").textContent = formatBytes(node.memoryBytes);
  cell("gpus").textContent = String(node.gpus);
  cell("labels").replaceChildren(...(labels.length ? labels.flatMap((l, i) => (i ? [" ", l] : [l])) : ["–"]));
  cell("seen").textContent = formatAge(node.lastSeenAt);
  if (!prev || prev.drain !== node.drain || prev.state !== node.state) {
    cell("actions").replaceChildren(drainButton(node) ?? "");
  }
  empty.hidden = nodes.size > 0;
}

function apply(kind, data) {
  if (kind === "node") upsert(data.node);
  if (kind === "heartbeats") {
    for (const beat of data.nodes) {
      const node = nodes.get(beat.name);
      if (!node) continue;
      upsert({ ...node, usedSlots: beat.usedSlots, lastSeenAt: beat.seenAt });
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
