/**
 * Real nats-servers for tests: one with JetStream on a free port, or a
 * cluster of them with clustered JetStream, on loopback.
 *
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { join } from "node:path";
import { freePort, type NatsServer, startNatsServer } from "../../core/nats_server.ts";
import { waitUntil } from "./wait.ts";

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
  const routePorts = Array.from({ length: size }, () => freePort());
  const servers = await Promise.all(routePorts.map((port, i) =>
    startNatsServer({
      storeDir: join(dir, `n${i}`),
      port: 0,
      cluster: {
        name: "parallelic-test",
        serverName: `n${i}`,
        port,
        routes: routePorts.filter((p) => p !== port).map((p) => `nats-route://127.0.0.1:${p}`),
      },
    })
  ));
  const urls = servers.map((s) => s.url).join(",");
  const nc = await connect({ servers: urls.split(",") });
  try {
    await waitUntil(
      async () => {
        try {
          await (await jetstreamManager(nc)).getAccountInfo();
          return true;
        } catch {
          return false;
        }
      },
      30_000,
      "a JetStream meta leader",
    );
  } finally {
    await nc.close();
  }
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
