/**
 * The manager: an embedded (or external) NATS server, Deno KV, the node,
 * task and workspace actors, the HTTP gateway, and optionally a local node.
 * This module only wires them together.
 *
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { join, resolve } from "node:path";
import { createDataActor } from "../actors/data.ts";
import { createNodeActor } from "../actors/node.ts";
import { createTaskActor } from "../actors/task.ts";
import { createWorkspaceActor } from "../actors/workspace.ts";
import { createBus } from "../core/bus.ts";
import { type Clock, systemClock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { type NatsServer, startNatsServer } from "../core/nats_server.ts";
import type { PackageLimits } from "../core/package.ts";
import { createGateway } from "../gateway/app.ts";
import { ensureAdminToken } from "../gateway/auth.ts";
import { type ComputeNode, startNode } from "../node/agent.ts";

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
  /** Admin token (else PARALLELIC_TOKEN, else generated into the data dir). */
  token?: string;
  /** Package limits. */
  limits?: PackageLimits;
  /** Largest data set version accepted, in bytes. @default {256 GiB} */
  maxDataSetBytes?: number;
  /** Data-set cache of the local node, in bytes. @default {10 GiB} */
  cacheBytes?: number;
  /** JetStream replicas. @default {1} */
  replicas?: number;
  /** Logger. */
  log: Logger;
  /** Clock. */
  clock?: Clock;
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
  /** Stops everything: local node, gateway, actors, then NATS last. */
  stop(): Promise<void>;
}

/** Starts a manager. */
export async function startManager(options: ManagerOptions): Promise<Manager> {
  const log = options.log;
  const clock = options.clock ?? systemClock;
  const dataDir = resolve(options.dataDir);
  await Deno.mkdir(dataDir, { recursive: true });
  let nats: NatsServer | null = null;
  let natsUrl = options.natsUrl;
  if (!natsUrl) {
    nats = await startNatsServer({
      storeDir: join(dataDir, "nats"),
      port: options.natsPort ?? 4222,
      host: options.natsHost ?? "127.0.0.1",
      log,
    });
    natsUrl = nats.url;
  }
  const cleanups: Array<() => Promise<void> | void> = [];
  try {
    const nc: NatsConnection = await connect({
      servers: natsUrl.split(","),
      name: "parallelic-manager",
      maxReconnectAttempts: -1,
      reconnectTimeWait: 250,
    });
    cleanups.push(() => nc.drain().catch(() => {}));
    const kv = await Deno.openKv(join(dataDir, "state.kv"));
    cleanups.push(() => kv.close());
    const bus = createBus(nc, log);
    const abort = new AbortController();
    const workspace = await createWorkspaceActor({ nc, kv, log }, { replicas: options.replicas });
    const data = await createDataActor({ nc, kv, clock, log }, {
      replicas: options.replicas,
      maxDataSetBytes: options.maxDataSetBytes,
    });
    const nodeActor = createNodeActor({ bus, kv, clock, log }, {
      signal: abort.signal,
      heartbeatMs: options.heartbeatMs,
      leaseMs: options.leaseMs,
    });
    await nodeActor.ready;
    const taskActor = createTaskActor({ bus, kv, clock, log }, {
      signal: abort.signal,
      retryBackoffMs: options.retryBackoffMs,
      orphanGraceMs: Math.max(3 * (options.heartbeatMs ?? 1000), 2000),
    });
    await taskActor.ready;
    cleanups.push(async () => {
      abort.abort();
      await taskActor.stopped;
      await nodeActor.stopped;
    });
    const tokenFile = join(dataDir, "admin-token");
    const admin = await ensureAdminToken(kv, tokenFile, options.token ?? Deno.env.get("PARALLELIC_TOKEN"));
    const app = createGateway({ bus, kv, workspace, data, log }, { limits: options.limits });
    const server = Deno.serve({
      port: options.port ?? 8080,
      hostname: options.host ?? "127.0.0.1",
      onListen: () => {},
    }, app.fetch);
    cleanups.push(() => server.shutdown());
    const addr = server.addr as Deno.NetAddr;
    const url = `http://${addr.hostname}:${addr.port}`;
    let localNode: ComputeNode | null = null;
    if (options.localNode ?? true) {
      localNode = await startNode({
        natsUrl,
        name: "local",
        slots: options.slots,
        cacheBytes: options.cacheBytes,
        workDir: join(dataDir, "node"),
        log,
        clock,
      });
      cleanups.push(() => localNode!.stop());
      await localNode.registered;
    }
    log.info("manager:ready", { url, nats: natsUrl, tokenSource: admin.source });
    let stopping: Promise<void> | undefined;
    return {
      url,
      natsUrl,
      token: admin.token,
      tokenFile,
      localNode,
      nats,
      stop() {
        stopping ??= (async () => {
          for (const fn of cleanups.reverse()) await fn();
          await nats?.stop();
        })();
        return stopping;
      },
    };
  } catch (e) {
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
    await nats?.stop();
    throw e;
  }
}
