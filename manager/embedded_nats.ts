/**
 * The embedded nats-server: started with the users of now (the manager, the
 * join token, every node key), and supervised: when it dies it is started
 * again on the same port and store, and manager and nodes reconnect by
 * themselves.
 *
 * @module
 */
import { join } from "node:path";
import type { Logger } from "../core/log.ts";
import type { NatsUsers } from "../core/nats_auth.ts";
import type { NatsCredentials } from "../core/nats_connect.ts";
import { type NatsServer, startNatsServer } from "../core/nats_server.ts";
import { createNatsUsers } from "./nats_users.ts";

/** What {@linkcode startEmbeddedNats} needs. */
export interface EmbeddedNatsOptions {
  kv: Deno.Kv;
  /** The manager's data dir: the server's store is `nats/` in it. */
  dataDir: string;
  /** Where the join token is kept. */
  joinTokenFile: string;
  /** The join token, when given (else the file's, or a new one). */
  joinToken?: string;
  port?: number;
  host?: string;
  tls?: { certFile: string; keyFile: string };
  log: Logger;
  /** True once the manager stops: a server that exits then is not started again. */
  stopping(): boolean;
}

/** A running embedded server. */
export interface EmbeddedNats {
  /** Its users, kept in Deno KV. */
  users: NatsUsers;
  /** The server now (another one after a restart). */
  server(): NatsServer;
  /** Its URL. */
  url: string;
  /** The manager's own credentials on it. */
  credentials: NatsCredentials;
}

/** Starts the embedded nats-server and supervises it. */
export async function startEmbeddedNats(options: EmbeddedNatsOptions): Promise<EmbeddedNats> {
  const { log } = options;
  let nats: NatsServer | undefined;
  const users = await createNatsUsers({
    kv: options.kv,
    joinTokenFile: options.joinTokenFile,
    joinToken: options.joinToken,
    apply: (authorization) => nats!.reload(authorization),
    log,
  });
  const natsOptions = {
    storeDir: join(options.dataDir, "nats"),
    port: options.port ?? 4222,
    host: options.host ?? "127.0.0.1",
    tls: options.tls,
    log,
  };
  nats = await startNatsServer({ ...natsOptions, authorization: await users.authorization() });
  natsOptions.port = nats.port;
  // Supervise the embedded server: if it dies, start it again on the same port
  // and store, with the users of now; manager and nodes reconnect by themselves.
  const supervise = (server: NatsServer) => {
    server.exited.then(async (status) => {
      if (options.stopping()) return;
      log.error("nats:exited", { code: status.code, signal: status.signal });
      for (let delay = 100; !options.stopping(); delay = Math.min(delay * 2, 5000)) {
        try {
          nats = await startNatsServer({ ...natsOptions, authorization: await users.authorization() });
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
  return { users, server: () => nats!, url: nats.url, credentials: users.manager };
}
