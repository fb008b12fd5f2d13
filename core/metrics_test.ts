import assert from "node:assert/strict";
import { Metrics } from "./metrics.ts";

Deno.test("Metrics renders counters, gauges and histograms in the Prometheus text format", () => {
  const m = new Metrics();
  const c = m.counter("jobs_total", "Jobs.");
  c.inc({ outcome: "ok" });
  c.inc({ outcome: "ok" }, 2);
  c.inc({ outcome: 'we"ird' });
  let live = 5;
  m.gauge("live", "Live things.", (g) => g.set(live));
  const h = m.histogram("run_seconds", "Run time.", [0.1, 1]);
  h.observe(0.05);
  h.observe(0.5);
  h.observe(7);
  live = 6;
  const text = m.render();
  assert.match(text, /# TYPE jobs_total counter\njobs_total\{outcome="ok"\} 3\n/);
  assert.match(text, /jobs_total\{outcome="we\\"ird"\} 1/);
  assert.match(text, /# TYPE live gauge\nlive 6\n/, "gauges are collected at render time");
  assert.match(
    text,
    /run_seconds_bucket\{le="0.1"\} 1\nrun_seconds_bucket\{le="1"\} 2\nrun_seconds_bucket\{le="\+Inf"\} 3\n/,
  );
  assert.match(text, /run_seconds_sum 7.55\nrun_seconds_count 3\n/);
});

Deno.test("Metrics counts a series once whatever the order of its labels, and apart from its neighbours", () => {
  const m = new Metrics();
  const c = m.counter("sent_total", "Sent.");
  c.inc();
  c.inc({}, 2);
  c.inc({ node: "a" });
  c.inc({ node: "a", kind: "x" });
  c.inc({ kind: "x", node: "a" }, 4);
  c.inc({ node: "b", kind: "x" });
  const lines = m.render().split("\n").filter((l) => l.startsWith("sent_total"));
  assert.deepEqual(lines, [
    "sent_total 3",
    'sent_total{node="a"} 1',
    'sent_total{node="a",kind="x"} 5',
    'sent_total{node="b",kind="x"} 1',
  ]);
});
