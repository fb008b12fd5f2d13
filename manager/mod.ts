/**
 * The manager: an embedded (or external) NATS server, Deno KV, the node,
 * task and join actors, the workspace and data services, the HTTP gateway,
 * and optionally a local node. This module only wires them together:
 * `embedded_nats.ts` starts and supervises the NATS server, `actors.ts` the
 * actors and services, `gateway_server.ts` serves the gateway.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Hono } from "hono";
import { join, resolve } from "node:path";
import { type Clock, systemClock } from "../core/clock.ts";
import { lockDir } from "../core/dir_lock.ts";
import type { Logger } from "../core/log.ts";
import { connectNats, type NatsCredentials, type NatsTls } from "../core/nats_connect.ts";
import type { NatsServer } from "../core/nats_server.ts";
import type { PackageLimits } from "../core/package.ts";
import type { GatewayEnv, GatewayOptions } from "../gateway/app.ts";
import { ensureAdminToken } from "../gateway/auth.ts";
import type { FrontDoorOptions } from "../gateway/front_door.ts";
import { type ComputeNode, startNode } from "../node/agent.ts";
import { startActors } from "./actors.ts";
import { type EmbeddedNats, startEmbeddedNats } from "./embedded_nats.ts";
import { serveGateway } from "./gateway_server.ts";

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
  let embedded: EmbeddedNats | null = null;
  let natsUrl = options.natsUrl;
  let stopping: Promise<void> | undefined;
  const joinTokenFile = join(dataDir, "join-token");
  try {
    const kv = await Deno.openKv(join(dataDir, "state.kv"));
    cleanups.push(() => kv.close());
    let natsCredentials = options.natsCredentials;
    if (!natsUrl) {
      embedded = await startEmbeddedNats({
        kv,
        dataDir,
        joinTokenFile,
        joinToken: options.joinToken,
        port: options.natsPort,
        host: options.natsHost,
        tls: options.natsServerTls,
        log,
        stopping: () => stopping !== undefined,
      });
      natsUrl = embedded.url;
      natsCredentials = embedded.credentials;
    }
    const users = embedded?.users ?? null;
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
    const actors = await startActors({ nc, kv, clock, log, users, dataDir }, options);
    cleanups.push(() => actors.stop());
    const tokenFile = join(dataDir, "admin-token");
    const admin = await ensureAdminToken(kv, tokenFile, options.token ?? Deno.env.get("PARALLELIC_TOKEN"));
    const { bus, workspace, data, metrics, audit } = actors;
    const { app, url } = await serveGateway(
      { bus, kv, workspace, data, log, metrics, audit, users },
      options,
      { dataDir, notifySecret: actors.notifySecret.secret },
      cleanups,
    );
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
        return embedded?.server() ?? null;
      },
      natsCredentials,
      get joinToken() {
        return users?.joinToken() ?? null;
      },
      joinTokenFile,
      notifySecretFile: actors.notifySecret.file,
      gateway: app,
      stop() {
        stopping ??= (async () => {
          for (const fn of cleanups.reverse()) await fn();
          await embedded?.server().stop();
          dirLock.release();
        })();
        return stopping;
      },
    };
  } catch (e) {
    stopping = Promise.resolve();
    for (const fn of cleanups.reverse()) await Promise.resolve(fn()).catch(() => {});
    await embedded?.server().stop();
    dirLock.release();
    throw e;
  }
}
