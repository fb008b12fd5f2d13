/**
 * The node's own metrics (`--metrics-port`): instances it holds by state,
 * started and finished, package fetches, slots and dropped messages.
 *
 * @module
 */
import type { Bus } from "../core/bus.ts";
import { Metrics } from "../core/metrics.ts";
import type { PackageCache } from "./cache.ts";

/** The node's own metrics. */
export function nodeMetrics(
  bus: Bus,
  cache: PackageCache,
  slots: number,
  count: Record<"running" | "queued" | "unreported" | "started" | "finished" | "usedSlots", () => number>,
): Metrics {
  const metrics = new Metrics();
  metrics.gauge("parallelic_node_instances", "Instances this node holds, by state.", (g) => {
    g.set(count.running(), { state: "running" });
    g.set(count.queued(), { state: "queued" });
    g.set(count.unreported(), { state: "unreported" });
  });
  metrics.gauge("parallelic_node_instances_started", "Instances this node started.", (g) => g.set(count.started()));
  metrics.gauge("parallelic_node_instances_finished", "Instances this node finished.", (g) => g.set(count.finished()));
  metrics.gauge(
    "parallelic_node_package_fetches",
    "Packages fetched from the object store.",
    (g) => g.set(cache.fetches),
  );
  metrics.gauge("parallelic_node_slots", "Slots: total and used.", (g) => {
    g.set(slots, { kind: "total" });
    g.set(count.usedSlots(), { kind: "used" });
  });
  metrics.gauge(
    "parallelic_rejected_messages",
    "NATS messages dropped because they failed their schema.",
    (g) => g.set(bus.rejected),
  );
  return metrics;
}

/** Serves `metrics` at `http://127.0.0.1:<port>/metrics` (`--metrics-port`). */
export function serveMetrics(port: number, metrics: Metrics): Deno.HttpServer {
  return Deno.serve(
    { port, hostname: "127.0.0.1", onListen: () => {} },
    (req) =>
      new URL(req.url).pathname === "/metrics"
        ? new Response(metrics.render(), { headers: { "content-type": "text/plain; version=0.0.4" } })
        : new Response("not found", { status: 404 }),
  );
}
