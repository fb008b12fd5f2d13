/**
 * The node actor: the manager's registry of compute nodes. It takes
 * registrations and heartbeats, keeps each node's lease, and tells everyone
 * (on `parallelic.nodes.event`) when a node joins, changes or is lost.
 *
 * @module
 */
import type { Bus } from "../core/bus.ts";
import type { Clock, TimerId } from "../core/clock.ts";
import { NotFoundError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import {
  nodeDrain,
  type NodeEvent,
  nodeHeartbeatAll,
  nodeLeavingAll,
  nodeLeftAll,
  type NodeRecord,
  nodeRegisterAll,
  nodeRejoin,
  nodesDrain,
  nodesEvent,
  nodesList,
  nodesUsage,
} from "../core/schema.ts";
import { nodeKey, NODES } from "../core/kv.ts";
import { createUsageRing, USAGE_KEEP_MS, USAGE_SPAN_MS, type UsageRing } from "./node_usage.ts";

/** What the node actor needs. */
export interface NodeActorDeps {
  bus: Bus;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
  /** Where gauges go. @default {a private registry} */
  metrics?: Metrics;
}

/** Options of {@linkcode createNodeActor}. */
export interface NodeActorOptions {
  /** Stops the actor. */
  signal: AbortSignal;
  /** How often nodes send a heartbeat. @default {1000} */
  heartbeatMs?: number;
  /** A node silent for this long is lost and its instances are requeued. @default {5000} */
  leaseMs?: number;
  /** How often a node's last-seen time is written to Deno KV. @default {10000} */
  persistEveryMs?: number;
}

/** A running node actor. */
export interface NodeActor {
  /** Resolves once nodes were loaded and subscriptions are live. */
  readonly ready: Promise<void>;
  /** Resolves when stopped. */
  readonly stopped: Promise<void>;
}

/** Creates the node actor. */
export function createNodeActor(deps: NodeActorDeps, options: NodeActorOptions): NodeActor {
  const { bus, kv, clock } = deps;
  const log = deps.log.scope({ actor: "node" });
  const heartbeatMs = options.heartbeatMs ?? 1000;
  const leaseMs = options.leaseMs ?? 5000;
  const persistEveryMs = options.persistEveryMs ?? 10_000;
  const { signal } = options;
  const nodes = new Map<string, NodeRecord & { persistedAt: number }>();
  /** Each node's recent use (memory only: no write per heartbeat). */
  const usage = new Map<string, UsageRing>();
  let timer: TimerId | undefined;
  const metrics = deps.metrics ?? new Metrics();
  metrics.gauge("parallelic_nodes", "Nodes the manager knows, by state.", (g) => {
    const by: Record<string, number> = { ready: 0, draining: 0, lost: 0, left: 0 };
    for (const n of nodes.values()) by[n.state]++;
    for (const [state, n] of Object.entries(by)) g.set(n, { state });
  });
  metrics.gauge(
    "parallelic_node_slots",
    "Slots of ready and draining nodes: total, and used at the last heartbeat.",
    (g) => {
      let total = 0;
      let used = 0;
      for (const n of nodes.values()) {
        if (n.state !== "ready" && n.state !== "draining") continue;
        total += n.slots;
        used += n.usedSlots;
      }
      g.set(total, { kind: "total" });
      g.set(used, { kind: "used" });
    },
  );
  const heartbeats = metrics.counter("parallelic_node_heartbeats_total", "Heartbeats received from nodes.");

  const persist = async (rec: NodeRecord & { persistedAt: number }) => {
    rec.persistedAt = clock.now();
    const { persistedAt: _, ...value } = rec;
    await kv.set(nodeKey(rec.name), value);
  };

  const plain = (rec: NodeRecord & { persistedAt?: number }): NodeRecord => {
    const { persistedAt: _, ...value } = rec;
    return value;
  };

  const emit = (kind: NodeEvent["kind"], rec: NodeRecord) => {
    bus.publish(nodesEvent, { kind, node: plain(rec) });
  };

  bus.serve(nodeRegisterAll, async (req) => {
    const now = clock.now();
    const before = nodes.get(req.name);
    const rec = {
      name: req.name,
      slots: req.slots,
      cpus: req.cpus,
      memoryBytes: req.memoryBytes,
      gpus: req.gpus,
      ...(req.gpuDevices ? { gpuDevices: req.gpuDevices } : {}),
      ...(req.limits ? { limits: req.limits } : {}),
      labels: req.labels,
      version: req.version,
      hostname: req.hostname,
      drain: before?.drain ?? false,
      state: before?.drain ? "draining" as const : "ready" as const,
      joinedAt: now,
      lastSeenAt: now,
      usedSlots: 0,
      holding: req.holding.length,
      persistedAt: 0,
    };
    nodes.set(rec.name, rec);
    await persist(rec);
    log.info("node:joined", { node: rec.name, slots: rec.slots, hostname: rec.hostname, rejoin: !!before });
    emit("joined", rec);
    return { ok: true as const, heartbeatMs, leaseMs };
  }, { signal });

  bus.subscribe(nodeHeartbeatAll, async (hb) => {
    const rec = nodes.get(hb.name);
    if (!rec || rec.state === "lost" || rec.state === "left") {
      bus.publish(nodeRejoin(hb.name), { reason: rec ? "lease expired" : "unknown node" });
      return;
    }
    heartbeats.inc();
    rec.lastSeenAt = clock.now();
    rec.usedSlots = hb.usedSlots;
    rec.holding = hb.holding.length;
    rec.clockSkewMs = rec.lastSeenAt - hb.sentAt;
    let ring = usage.get(rec.name);
    if (!ring) usage.set(rec.name, ring = createUsageRing());
    ring.add(rec.lastSeenAt, hb);
    if (rec.lastSeenAt - rec.persistedAt >= persistEveryMs) await persist(rec);
  }, { signal });

  bus.subscribe(nodeLeavingAll, async (msg) => {
    const rec = nodes.get(msg.name);
    if (!rec || rec.state !== "ready") return;
    rec.state = "draining";
    await persist(rec);
    log.info("node:leaving", { node: rec.name });
    emit("updated", rec);
  }, { signal });

  bus.serve(nodeLeftAll, async (msg) => {
    const rec = nodes.get(msg.name);
    if (rec && rec.state !== "left") {
      rec.state = "left";
      await persist(rec);
      log.info("node:left", { node: rec.name });
      emit("left", rec);
    }
    return { ok: true as const };
  }, { signal });

  bus.serve(nodesList, () => ({ ok: true as const, nodes: [...nodes.values()].map(plain) }), { signal });

  bus.serve(nodesUsage, (req) => {
    const rec = nodes.get(req.name);
    if (!rec) {
      throw new NotFoundError(`Node '${req.name}' does not exist: no node of that name joined`, {
        code: "node_not_found",
      });
    }
    const sinceMs = clock.now() - Math.min(req.minutes * 60_000, USAGE_KEEP_MS);
    const samples = usage.get(rec.name)?.since(sinceMs) ?? [];
    const view = { name: rec.name, spanMs: USAGE_SPAN_MS, slots: rec.slots, memoryBytes: rec.memoryBytes, samples };
    return { ok: true as const, usage: view };
  }, { signal });

  bus.serve(nodesDrain, async (req) => {
    const rec = nodes.get(req.name);
    if (!rec) {
      throw new NotFoundError(`Cannot drain node '${req.name}' as no such node joined`, { code: "node_not_found" });
    }
    rec.drain = req.drain;
    if (rec.state === "ready" || rec.state === "draining") rec.state = req.drain ? "draining" : "ready";
    await persist(rec);
    log.info(req.drain ? "node:draining" : "node:resumed", { node: rec.name });
    emit("updated", rec);
    // What the node holds ahead of its slots must not start there: it hands that back.
    bus.publish(nodeDrain(rec.name), { drain: req.drain });
    // The caller may submit the moment it hears back (and is answered in-process when it is the gateway): the
    // event must have reached the task actor first. A flush's answer comes after the server delivered it.
    // Disconnected, the event waits in the client's buffer and the drain (stored) stands: answer anyway.
    await bus.nc.flush().catch(() => {});
    return { ok: true as const, node: plain(rec) };
  }, { signal });

  const checkLeases = async () => {
    const now = clock.now();
    for (const rec of nodes.values()) {
      if (rec.state !== "lost" && rec.state !== "left" && now - rec.lastSeenAt > leaseMs) {
        rec.state = "lost";
        await persist(rec);
        log.warn("node:lost", { node: rec.name, silentMs: now - rec.lastSeenAt });
        emit("lost", rec);
      }
    }
    if (!signal.aborted) {
      timer = clock.setTimeout(() => void checkLeases(), Math.max(50, Math.min(heartbeatMs, leaseMs / 4)));
    }
  };

  const ready = (async () => {
    const now = clock.now();
    for await (const entry of kv.list<NodeRecord>({ prefix: NODES })) {
      // After a manager restart every known node gets a fresh lease to report in.
      nodes.set(entry.key[1] as string, { ...entry.value, lastSeenAt: now, persistedAt: now });
    }
    await checkLeases();
  })();

  const stopped = new Promise<void>((resolve) => {
    const stop = () => {
      if (timer !== undefined) clock.clearTimeout(timer);
      resolve();
    };
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  });

  return { ready, stopped };
}
