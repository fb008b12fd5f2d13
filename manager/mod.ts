/**
 * The manager: an embedded (or external) NATS server, Deno KV, the node,
 * task and join actors, the workspace and data services, the HTTP gateway,
 * and optionally a local node. This module only wires them together.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { join, resolve } from "node:path";
import { createDataService } from "../services/data/mod.ts";
import { createJoinActor } from "../actors/join.ts";
import { createNodeActor } from "../actors/node.ts";
import { createTaskActor } from "../actors/task/mod.ts";
import { createWorkspaceService } from "../services/workspace.ts";
import { createNotifyService } from "../services/notify.ts";
import { createAuditLog, rateLimitedAudit } from "../core/audit.ts";
import { type Bucket, openBucket } from "../core/objects.ts";
import { createLogRelay } from "../actors/log_relay.ts";
import { createObjectService, OBJECT_BUCKETS } from "../actors/object_service.ts";
import { createBus } from "../core/bus.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { Metrics } from "../core/metrics.ts";
import { lockDir } from "../core/dir_lock.ts";
import { connectNats, type NatsCredentials, type NatsTls } from "../core/nats_connect.ts";
import { type NatsServer, startNatsServer } from "../core/nats_server.ts";
import type { PackageLimits } from "../core/package.ts";
import type { Hono } from "hono";
import { createGateway, type GatewayEnv, type GatewayOptions } from "../gateway/app.ts";
import { ensureAdminToken } from "../gateway/auth.ts";
import { type FrontDoorOptions, startFrontDoor } from "../gateway/front_door.ts";
import { type ComputeNode, startNode } from "../node/agent.ts";
import type { NatsUsers } from "../core/nats_auth.ts";
import { createNatsUsers } from "./nats_users.ts";
import { loadNotifySecret } from "./notify_secret.ts";

/** Options of {@linkcode startManager}. */
export interface ManagerOptions {
  /** Folder for Deno KV, embedded NATS data and the admin token file. */
  dataDir: string;
  /** Gateway port; 0 picks a free one. @default {8080} */
  port?: number;
  /** Gateway address. @default {"127.0.0.1"} */
  host?: string;
  /** External NATS URL(s); without it an embedded nats-server is started. */
  natsUrl?: string;
  /** Embedded NATS port; 0 picks a free one. @default {4222} */
  natsPort?: number;
  /** Embedded NATS address. @default {"127.0.0.1"} */
  natsHost?: string;
  /** Start a node inside the manager. @default {true} */
  localNode?: boolean;
  /** Slots of the local node. @default {CPU count} */
  slots?: number;
  /** Node heartbeat interval. @default {1000} */
  heartbeatMs?: number;
  /** Node lease. @default {5000} */
  leaseMs?: number;
  /** First retry delay. @default {1000} */
  retryBackoffMs?: number;
  /** On stop, how long the local node's running instances may finish. @default {30000} */
  graceMs?: number;
  /** Admin token (else PARALLELIC_TOKEN, else generated into the data dir). */
  token?: string;
  /** Package limits. */
  limits?: PackageLimits;
  /** Largest data set version accepted, in bytes. @default {256 GiB} */
  maxDataSetBytes?: number;
  /** Most files in a data set version. @default {1,000,000} */
  maxDataSetFiles?: number;
  /** Data-set cache of the local node, in bytes. @default {10 GiB} */
  cacheBytes?: number;
  /** JetStream replicas. @default {1} */
  replicas?: number;
  /** The join token nodes use (else `DIR/join-token`, made at first start). Embedded NATS only. */
  joinToken?: string;
  /** Credentials for an external NATS server (`natsUrl`). */
  natsCredentials?: NatsCredentials;
  /** TLS towards NATS (external, or the embedded server when `natsServerTls` is set). */
  natsTls?: NatsTls;
  /** Serve the embedded NATS server over TLS with this certificate and key. */
  natsServerTls?: { certFile: string; keyFile: string };
  /** Gateway limits: request body size, requests per token, failed sign-ins per address (see `gateway/guard.ts`). */
  gateway?: Omit<GatewayOptions, "limits">;
  /** Timeouts and per-client connection bound of the gateway's listener. */
  frontDoor?: Pick<FrontDoorOptions, "headerTimeoutMs" | "idleTimeoutMs" | "maxConnectionsPerClient">;
  /** Serve the gateway over HTTPS with this certificate and key (PEM files). */
  gatewayTls?: { certFile: string; keyFile: string };
  /** How long audit entries are kept. @default {90 days} */
  auditRetentionMs?: number;
  /** Logger. */
  log: Logger;
  /** Clock. */
  clock?: Clock;
  /** How long the first connect to NATS is retried before the manager gives up. @default {60000} */
  natsConnectMs?: number;
  /** The manager's public URL (`--public-url`): task notifications link to the task's page under it. */
  publicUrl?: string;
  /** Task notifications (`[notify]`): the secret, the addresses allowed, the retry pace (see `services/notify.ts`). */
  notify?: {
    /** File holding the signing secret (else `DIR/notify-secret`, made at first start). */
    secretFile?: string;
    /** Internal hosts, addresses and CIDRs webhooks may reach (`--notify-allow`). */
    allow?: string[];
    /** Wait before the second try. @default {15000} */
    firstRetryMs?: number;
    /** Longest wait for an answer per try. @default {10000} */
    timeoutMs?: number;
    /** Tries before giving up. @default {5} */
    tries?: number;
  };
}

/** A running manager. */
export interface Manager {
  /** `http://host:port` of the gateway. */
  readonly url: string;
  /** NATS URL nodes join with. */
  readonly natsUrl: string;
  /** The admin token when known here (env, option, or generated file). */
  readonly token: string | null;
  /** Where the admin token was written. */
  readonly tokenFile: string;
  /** The local node, when started. */
  readonly localNode: ComputeNode | null;
  /** The embedded NATS server, when started. */
  readonly nats: NatsServer | null;
  /** The manager's own NATS credentials (full permissions; for tests and tools in this process). */
  readonly natsCredentials: NatsCredentials | undefined;
  /** The join token nodes use, with the embedded NATS server (null with an external one). */
  readonly joinToken: string | null;
  /** Where the join token is kept. */
  readonly joinTokenFile: string;
  /** Where the key task notifications are signed with is kept. */
  readonly notifySecretFile: string;
  /** The gateway's Hono app: `gateway.request()` reaches it without a socket (tests). */
  readonly gateway: Hono<GatewayEnv>;
  /** Stops everything: local node, gateway, actors, then NATS last. */
  stop(): Promise<void>;
}

/** Starts a manager. */
export async function startManager(options: ManagerOptions): Promise<Manager> {
  const log = options.log;
  const clock = options.clock ?? systemClock;
  const dataDir = resolve(options.dataDir);
  await Deno.mkdir(dataDir, { recursive: true, mode: 0o700 });
  // Tokens, keys and state live here: only the manager's user may enter.
  await Deno.chmod(dataDir, 0o700);
  // Before anything in it is touched: a second manager here would take over the first one's nats-server and store.
  const dirLock = await lockDir(dataDir, "data dir", "--data-dir");
  const cleanups: Array<() => Promise<void> | void> = [];
  let nats: NatsServer | null = null;
  let natsUrl = options.natsUrl;
  let stopping: Promise<void> | undefined;
  const joinTokenFile = join(dataDir, "join-token");
  try {
    const kv = await Deno.openKv(join(dataDir, "state.kv"));
    cleanups.push(() => kv.close());
    let users: NatsUsers | null = null;
    let natsCredentials = options.natsCredentials;
    if (!natsUrl) {
      const natsUsers = users = await createNatsUsers({
        kv,
        joinTokenFile,
        joinToken: options.joinToken,
        apply: (authorization) => nats!.reload(authorization),
        log,
      });
      const natsOptions = {
        storeDir: join(dataDir, "nats"),
        port: options.natsPort ?? 4222,
        host: options.natsHost ?? "127.0.0.1",
        tls: options.natsServerTls,
        log,
      };
      nats = await startNatsServer({ ...natsOptions, authorization: await natsUsers.authorization() });
      natsOptions.port = nats.port;
      natsUrl = nats.url;
      natsCredentials = natsUsers.manager;
      // Supervise the embedded server: if it dies, start it again on the same port
      // and store, with the users of now; manager and nodes reconnect by themselves.
      const supervise = (server: NatsServer) => {
        server.exited.then(async (status) => {
          if (stopping) return;
          log.error("nats:exited", { code: status.code, signal: status.signal });
          for (let delay = 100; !stopping; delay = Math.min(delay * 2, 5000)) {
            try {
              nats = await startNatsServer({ ...natsOptions, authorization: await natsUsers.authorization() });
              supervise(nats);
              return;
            } catch (e) {
              log.error("nats:restart-failed", { error: (e as Error).message, retryInMs: delay });
              await new Promise((r) => setTimeout(r, delay));
            }
          }
        });
      };
      supervise(nats);
    }
    // An embedded nats-server restarted at once after a crash, or an external one still starting, may refuse
    // the first connects: retried for a while, each wait said.
    const nc: NatsConnection = await connectNats({
      servers: natsUrl,
      name: "parallelic-manager",
      credentials: natsCredentials,
      tls: options.natsTls,
      waitOnFirstConnect: true,
      giveUpAfterMs: options.natsConnectMs ?? 60_000,
      onRetry: (e, retryInMs) => log.warn("manager:nats-unreachable", { url: natsUrl, error: e.message, retryInMs }),
    });
    cleanups.push(() => nc.drain().catch(() => {}));
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
    const notifySecret = await loadNotifySecret(dataDir, options.notify?.secretFile);
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
    cleanups.push(async () => {
      abort.abort();
      await taskActor.stopped;
      await nodeActor.stopped;
      await notifier.stopped;
    });
    const tokenFile = join(dataDir, "admin-token");
    const admin = await ensureAdminToken(kv, tokenFile, options.token ?? Deno.env.get("PARALLELIC_TOKEN"));
    const gatewayAbort = new AbortController();
    // Uploads are spooled on the data dir's disk; what a crash left there is of no use.
    const spoolDir = join(dataDir, "uploads");
    await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
    const app = createGateway({ bus, kv, workspace, data, log, metrics, audit, users }, {
      ...options.gateway,
      limits: options.limits,
      spoolDir,
      signal: gatewayAbort.signal,
      notify: {
        secret: notifySecret.secret,
        allow: options.notify?.allow ?? [],
        publicUrl: options.publicUrl ?? null,
      },
    });
    const tls = options.gatewayTls;
    // Clients reach Deno.serve through the front door (gateway/front_door.ts), over a socket only this user can reach.
    const socketDir = await Deno.makeTempDir({ prefix: "parallelic-gateway-" });
    const upstreamPath = join(socketDir, "gateway.sock");
    const server = Deno.serve({ path: upstreamPath, onListen: () => {} }, app.fetch);
    cleanups.push(() => Deno.remove(socketDir, { recursive: true }).catch(() => {}));
    const door = startFrontDoor({
      ...options.frontDoor,
      port: options.port ?? 8080,
      hostname: options.host ?? "127.0.0.1",
      upstreamPath,
      tls: tls ? { cert: await Deno.readTextFile(tls.certFile), key: await Deno.readTextFile(tls.keyFile) } : undefined,
    });
    cleanups.push(async () => {
      gatewayAbort.abort(); // ends live event streams, which would otherwise hold the shutdown open
      await door.close();
      await server.shutdown();
    });
    const addr = door.addr;
    const url = `${tls ? "https" : "http"}://${addr.hostname}:${addr.port}`;
    let localNode: ComputeNode | null = null;
    if (options.localNode ?? true) {
      localNode = await startNode({
        natsUrl,
        name: "local",
        slots: options.slots,
        cacheBytes: options.cacheBytes,
        workDir: join(dataDir, "node"),
        graceMs: options.graceMs,
        credentials: users ? await users.inProcessNode("local") : natsCredentials,
        tls: options.natsTls,
        log,
        clock,
      });
      cleanups.push(() => localNode!.stop());
      await localNode.registered;
    }
    log.info("manager:ready", { url, nats: natsUrl, tokenSource: admin.source });
    return {
      url,
      natsUrl,
      token: admin.token,
      tokenFile,
      localNode,
      get nats() {
        return nats;
      },
      natsCredentials,
      get joinToken() {
        return users?.joinToken() ?? null;
      },
      joinTokenFile,
      notifySecretFile: notifySecret.file,
      gateway: app,
      stop() {
        stopping ??= (async () => {
          for (const fn of cleanups.reverse()) await fn();
          await nats?.stop();
          dirLock.release();
        })();
        return stopping;
      },
    };
  } catch (e) {
    stopping = Promise.resolve();
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
    await nats?.stop();
    dirLock.release();
    throw e;
  }
}
