/**
 * Real nats-servers for tests: one with JetStream on a free port, or a
 * cluster of them with clustered JetStream, on loopback.
 *
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { join } from "node:path";
import { type NatsServer, startNatsCluster, startNatsServer } from "../../core/nats_server.ts";

/** A nats-server with JetStream in a temp folder, and a connection to it. */
export interface TestNats extends AsyncDisposable {
  server: NatsServer;
  nc: NatsConnection;
  dir: string;
}

/**
 * A connection with node `name`'s inbox: the manager's bus answers a request
 * on a node's subjects only into that node's inbox. Close it when done.
 */
export function connectAsNode(servers: string, name: string): Promise<NatsConnection> {
  return connect({ servers, inboxPrefix: `_INBOX_${name}`, reconnect: false });
}

/** Starts nats-server on a free port. */
export async function startTestNats(): Promise<TestNats> {
  const dir = await Deno.makeTempDir({ prefix: "parallelic-nats-" });
  const server = await startNatsServer({ storeDir: join(dir, "js"), port: 0 });
  const nc = await connect({ servers: server.url });
  return {
    server,
    nc,
    dir,
    async [Symbol.asyncDispose]() {
      await nc.close().catch(() => {});
      await server.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A NATS cluster of `size` servers on loopback, with clustered JetStream. */
export interface TestCluster extends AsyncDisposable {
  servers: NatsServer[];
  /** Every client URL, comma-separated (what `--nats` takes). */
  urls: string;
  dir: string;
}

/** Starts a NATS cluster on free loopback ports and waits until JetStream has a leader. */
export async function startTestCluster(size = 3): Promise<TestCluster> {
  const dir = await Deno.makeTempDir({ prefix: "parallelic-cluster-" });
  const { servers, urls } = await startNatsCluster(dir, size);
  return {
    servers,
    urls,
    dir,
    async [Symbol.asyncDispose]() {
      await Promise.all(servers.map((s) => s.stop()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
