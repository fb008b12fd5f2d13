/**
 * The gateway as clients reach it: the Hono app served on a Unix socket only
 * the manager's user can reach, behind the front door
 * (`gateway/front_door.ts`) on the public port, over HTTPS when given a
 * certificate.
 *
 * @module
 */
import type { Hono } from "hono";
import { join } from "node:path";
import { createGateway, type GatewayDeps, type GatewayEnv } from "../gateway/app.ts";
import { startFrontDoor } from "../gateway/front_door.ts";
import type { ManagerOptions } from "./mod.ts";

/** The served gateway. */
export interface GatewayServer {
  /** The Hono app (`app.request()` reaches it without a socket). */
  app: Hono<GatewayEnv>;
  /** Where clients reach it. */
  url: string;
}

/**
 * Serves the gateway; pushes onto `cleanups` what undoes each step, in the
 * order they must be undone last to first.
 */
export async function serveGateway(
  deps: GatewayDeps,
  options: ManagerOptions,
  at: {
    /** The manager's data dir: uploads are spooled in it. */
    dataDir: string;
    /** The key task notifications are signed with. */
    notifySecret: string;
  },
  cleanups: Array<() => Promise<void> | void>,
): Promise<GatewayServer> {
  const gatewayAbort = new AbortController();
  // Uploads are spooled on the data dir's disk; what a crash left there is of no use.
  const spoolDir = join(at.dataDir, "uploads");
  await Deno.remove(spoolDir, { recursive: true }).catch(() => {});
  const app = createGateway(deps, {
    ...options.gateway,
    limits: options.limits,
    spoolDir,
    signal: gatewayAbort.signal,
    notify: {
      secret: at.notifySecret,
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
  return { app, url: `${tls ? "https" : "http"}://${addr.hostname}:${addr.port}` };
}
