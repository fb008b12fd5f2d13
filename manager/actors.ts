/**
 * The manager's actors and services on the bus: the audit log, the node and
 * task actors, the workspace, data and notify services, the object service,
 * the log relay and (with the embedded server) the join actor; and how they
 * stop.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { createJoinActor } from "../actors/join.ts";
import { createLogRelay } from "../actors/log_relay.ts";
import { createNodeActor } from "../actors/node.ts";
import { createObjectService, OBJECT_BUCKETS } from "../actors/object_service.ts";
import { createTaskActor } from "../actors/task/mod.ts";
import { type AuditLog, createAuditLog, rateLimitedAudit } from "../core/audit.ts";
import { type Bus, createBus } from "../core/bus.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import type { NatsUsers } from "../core/nats_auth.ts";
import { type Bucket, openBucket } from "../core/objects.ts";
import { createDataService, type DataService } from "../services/data/mod.ts";
import { createNotifyService } from "../services/notify.ts";
import { createWorkspaceService, type WorkspaceService } from "../services/workspace.ts";
import type { ManagerOptions } from "./mod.ts";
import { loadNotifySecret } from "./notify_secret.ts";

/** What the actors need. */
export interface ActorsDeps {
  nc: NatsConnection;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
  /** The embedded server's users (null with an external server: no join actor). */
  users: NatsUsers | null;
  /** The manager's data dir (where the notify secret is kept unless `--notify-secret-file`). */
  dataDir: string;
}

/** The running actors, and what the gateway needs of them. */
export interface Actors {
  bus: Bus;
  audit: AuditLog;
  metrics: Metrics;
  workspace: WorkspaceService;
  data: DataService;
  /** The key task notifications are signed with, and its file. */
  notifySecret: { secret: string; file: string };
  /** Stops the actors and waits for the node and task actors to end. */
  stop(): Promise<void>;
}

/** Starts the manager's actors and services; resolves once the node and task actors are ready. */
export async function startActors(deps: ActorsDeps, options: ManagerOptions): Promise<Actors> {
  const { nc, kv, clock, log, users } = deps;
  const audit = createAuditLog(kv, log, { retentionMs: options.auditRetentionMs });
  const auditRefusal = rateLimitedAudit(audit);
  const bus = createBus(nc, log, {
    onReject: (subject, reason) =>
      auditRefusal({ action: "bus.rejected", user: null, address: "nats", target: subject, detail: reason }),
  });
  const metrics = new Metrics();
  const abort = new AbortController();
  const workspace = await createWorkspaceService({ nc, kv, log }, { replicas: options.replicas });
  const data = await createDataService({ nc, kv, clock, log }, {
    replicas: options.replicas,
    maxDataSetBytes: options.maxDataSetBytes,
    maxDataSetFiles: options.maxDataSetFiles,
  });
  const nodeActor = createNodeActor({ bus, kv, clock, log, metrics }, {
    signal: abort.signal,
    heartbeatMs: options.heartbeatMs,
    leaseMs: options.leaseMs,
  });
  await nodeActor.ready;
  const taskActor = createTaskActor({ bus, kv, clock, log, metrics, audit }, {
    signal: abort.signal,
    retryBackoffMs: options.retryBackoffMs,
    orphanGraceMs: Math.max(3 * (options.heartbeatMs ?? 1000), 2000),
  });
  await taskActor.ready;
  const notifySecret = await loadNotifySecret(deps.dataDir, options.notify?.secretFile);
  const notifier = createNotifyService({ bus, kv, clock, log }, {
    ...options.notify,
    signal: abort.signal,
    secret: notifySecret.secret,
    publicUrl: options.publicUrl,
  });
  const opened = new Map<string, Promise<Bucket>>();
  const bucket = (name: string) => () => {
    let b = opened.get(name);
    if (!b) opened.set(name, b = openBucket(nc, name));
    b.catch(() => opened.delete(name));
    return b;
  };
  createObjectService({
    bus,
    log,
    assignments: taskActor.assignments,
    buckets: {
      packages: bucket(OBJECT_BUCKETS.packages),
      data: bucket(OBJECT_BUCKETS.data),
      workspace: bucket(OBJECT_BUCKETS.workspace),
    },
    onRefused: (node, what) =>
      auditRefusal({ action: "object.refused", user: `node:${node}`, address: "nats", target: node, detail: what }),
  }, { signal: abort.signal });
  createLogRelay({
    bus,
    nc,
    log,
    clock,
    assignments: taskActor.assignments,
    onDropped: (node, what) =>
      auditRefusal({ action: "logs.dropped", user: `node:${node}`, address: "nats", target: node, detail: what }),
  }, { signal: abort.signal });
  if (users) createJoinActor({ bus, users, audit, log }, { signal: abort.signal });
  return {
    bus,
    audit,
    metrics,
    workspace,
    data,
    notifySecret,
    async stop() {
      abort.abort();
      await taskActor.stopped;
      await nodeActor.stopped;
      await notifier.stopped;
    },
  };
}
