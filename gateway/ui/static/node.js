/** A node: its facts, live, and its CPU, memory and slot use over the last hour as small charts. */
import { lineChart } from "./chart.js";
import {
  apiJson,
  badge,
  everySecond,
  fillFacts,
  formatAge,
  formatBytes,
  formatDuration,
  formatTime,
  h,
  liveEvents,
  startPage,
} from "./common.js";

const $ = (id) => document.getElementById(id);
await startPage();
const name = document.querySelector("[data-node-name]").dataset.nodeName;
const loadError = $("load-error");
const usageStatus = $("usage-status");
const WINDOW_MIN = 60;

/** The node as last heard of, or null before it loaded. */
let node = null;
let usageAt = 0;

function showNode() {
  if (!node) return;
  $("node-state").replaceChildren(badge(node.state));
  $("node-state").className = "";
  const labels = Object.entries(node.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  fillFacts($("node-facts"), [
    ["Host", `${node.hostname} · v${node.version}`],
    ["Slots", `${node.usedSlots} of ${node.slots} in use`],
    ["CPUs", String(node.cpus)],
    ["Memory", formatBytes(node.memoryBytes)],
    ["GPUs", String(node.gpus)],
    ["Labels", labels || "–"],
    ["Drain", node.drain ? "drained: takes nothing new" : "no"],
    ["Joined", formatTime(node.joinedAt)],
    ["Last heartbeat", h("span", { id: "node-seen" }, formatAge(node.lastSeenAt))],
    ...(node.clockSkewMs !== undefined ? [["Clock skew", formatDuration(Math.abs(node.clockSkewMs))]] : []),
  ]);
}

const percent = (v) => `${Math.round(v * 100)}%`;

async function loadUsage() {
  usageAt = Date.now();
  try {
    const usage = await apiJson(`/api/v1/nodes/${encodeURIComponent(name)}/usage?minutes=${WINDOW_MIN}`);
    const toMs = Date.now();
    const fromMs = toMs - WINDOW_MIN * 60_000;
    // A sample stands for its span: drawn at the span's middle.
    const at = (s) => Math.min(toMs, s.at + usage.spanMs / 2);
    const common = { fromMs, toMs, gapMs: usage.spanMs * 2.5 };
    const charts = [
      lineChart({
        ...common,
        title: "CPU busy",
        points: usage.samples.map((s) => ({ at: at(s), value: s.cpuBusy })),
        max: 1,
        format: percent,
      }),
      lineChart({
        ...common,
        title: "Memory in use",
        points: usage.samples.map((s) => ({ at: at(s), value: s.memoryUsedBytes })),
        max: usage.memoryBytes,
        format: formatBytes,
      }),
      lineChart({
        ...common,
        title: "Slots in use",
        points: usage.samples.map((s) => ({ at: at(s), value: s.usedSlots })),
        max: usage.slots,
        format: (v) => String(Math.round(v * 10) / 10),
      }),
    ];
    const titles = ["CPU busy (share of all cores)", "Memory in use", `Slots in use (of ${usage.slots})`];
    $("usage-charts").replaceChildren(
      ...charts.map((svg, i) => h("figure", { class: "usage-chart" }, h("figcaption", {}, titles[i]), svg)),
    );
    usageStatus.textContent = usage.samples.length
      ? `${usage.samples.length} sample${usage.samples.length === 1 ? "" : "s"}, updated ${
        new Date(toMs).toLocaleTimeString()
      }`
      : "No samples yet: the first comes with the node's next heartbeat.";
  } catch (e) {
    usageStatus.textContent = "";
    loadError.textContent = e.message;
  }
}

async function load() {
  loadError.textContent = "";
  try {
    const reply = await apiJson("/api/v1/nodes");
    node = reply.nodes.find((n) => n.name === name) ?? null;
    if (!node) {
      loadError.textContent = `Node '${name}' does not exist: no node of that name joined.`;
      return;
    }
    showNode();
    await loadUsage();
  } catch (e) {
    loadError.textContent = e.message;
  }
}

liveEvents({ topics: "nodes" }, {
  onReady: load,
  onEvent(kind, data) {
    if (kind === "node" && data.node.name === name) {
      node = data.node;
      showNode();
    }
    if (kind === "heartbeats" && node) {
      const beat = data.nodes.find((b) => b.name === name);
      if (!beat) return;
      node = { ...node, usedSlots: beat.usedSlots, lastSeenAt: beat.seenAt };
      showNode();
      // A new point every 30 s at most: the chart follows the heartbeats.
      if (Date.now() - usageAt >= 15_000) void loadUsage();
    }
  },
});

everySecond(() => {
  const seen = $("node-seen");
  if (seen && node) seen.textContent = formatAge(node.lastSeenAt);
});
