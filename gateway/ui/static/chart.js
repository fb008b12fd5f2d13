/**
 * A small line chart as inline SVG (no library): one series over a time
 * window, its area shaded, gaps where there is no sample, a scale on the
 * left and the window's ends below. Described for screen readers by its
 * label (latest and highest value).
 */

const SVG = "http://www.w3.org/2000/svg";
const W = 420;
const H = 150;
const LEFT = 56;
const BOTTOM = 22;
const TOP = 8;

function el(tag, attrs = {}, text) {
  const e = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * `points`: `[{ at, value }]` oldest first (value null: not known); the chart
 * spans `fromMs` to `toMs` and 0 to `max`, with values shown by `format`;
 * a gap longer than `gapMs` breaks the line.
 */
export function lineChart({ title, points, fromMs, toMs, max, format, gapMs }) {
  const known = points.filter((p) => p.value !== null && p.value !== undefined);
  const top = Math.max(max, ...known.map((p) => p.value), 1e-9);
  const x = (at) => LEFT + ((at - fromMs) / Math.max(1, toMs - fromMs)) * (W - LEFT - 4);
  const y = (v) => TOP + (1 - v / top) * (H - TOP - BOTTOM);
  const latest = known.at(-1);
  const highest = known.reduce((m, p) => Math.max(m, p.value), 0);
  const label = known.length
    ? `${title}: now ${format(latest.value)}, at most ${format(highest)} over the window (scale up to ${format(top)})`
    : `${title}: no samples yet`;
  const svg = el("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": label, class: "chart" });
  svg.append(el("title", {}, label));
  for (const f of [0, 0.5, 1]) {
    const yy = y(top * f);
    svg.append(el("line", { x1: LEFT, x2: W - 4, y1: yy, y2: yy, class: "chart-grid" }));
    svg.append(el("text", { x: LEFT - 6, y: yy + 4, "text-anchor": "end", class: "chart-text" }, format(top * f)));
  }
  const minutes = Math.round((toMs - fromMs) / 60_000);
  svg.append(el("text", { x: LEFT, y: H - 4, class: "chart-text" }, `${minutes} min ago`));
  svg.append(el("text", { x: W - 4, y: H - 4, "text-anchor": "end", class: "chart-text" }, "now"));
  // Runs of samples without a gap, each drawn as a shaded area under a line.
  const runs = [];
  for (const p of known) {
    const run = runs.at(-1);
    if (run && p.at - run.at(-1).at <= gapMs) run.push(p);
    else runs.push([p]);
  }
  for (const run of runs) {
    const line = run.map((p) => `${x(p.at).toFixed(1)},${y(p.value).toFixed(1)}`).join(" ");
    if (run.length === 1) {
      svg.append(el("circle", { cx: x(run[0].at), cy: y(run[0].value), r: 2.5, class: "chart-line" }));
      continue;
    }
    const base = y(0).toFixed(1);
    svg.append(el("polygon", {
      points: `${x(run[0].at).toFixed(1)},${base} ${line} ${x(run.at(-1).at).toFixed(1)},${base}`,
      class: "chart-area",
    }));
    svg.append(el("polyline", { points: line, class: "chart-line" }));
  }
  return svg;
}
