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
