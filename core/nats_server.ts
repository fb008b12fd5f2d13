/**
 * Runs Debian's `nats-server` as a child process with JetStream: the
 * manager's embedded server, and the ones tests and benchmarks start on free
 * ports (one, or a cluster of them on loopback).
 *
 * @module
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { join } from "node:path";
import { UnavailableError } from "./errors.ts";
import type { Logger } from "./log.ts";

/** Options of {@linkcode startNatsServer}. */
export interface NatsServerOptions {
  /** Folder for JetStream data (`-sd`). */
  storeDir: string;
  /** Client port; 0 picks a free one. @default {0} */
  port?: number;
  /** Address to listen on. @default {"127.0.0.1"} */
  host?: string;
  /** The nats-server executable. @default {Deno.env PARALLELIC_NATS_SERVER or "nats-server"} */
  command?: string;
  /** Extra configuration text appended to the generated config file. */
  extraConfig?: string;
  /** Join a NATS cluster: JetStream is then clustered (RAFT) and streams can have replicas. */
  cluster?: {
    /** Cluster name, the same on every server. */
    name: string;
    /** This server's name, unique in the cluster. */
    serverName: string;
    /** Route port. */
    port: number;
    /** Routes to the other servers: `nats-route://host:port`. */
    routes: string[];
  };
  /**
   * An `authorization { ... }` block (see `core/nats_auth.ts`); without it
   * the server admits anyone (tests of single actors only).
   */
  authorization?: string;
  /** Serve clients over TLS with this certificate and key (PEM files). */
  tls?: { certFile: string; keyFile: string };
  /** Logs the server's start and stop. */
  log?: Logger;
}

/** A running nats-server. */
export interface NatsServer {
  /** `nats://host:port` */
  readonly url: string;
  /** The client port. */
  readonly port: number;
  /** The child's pid. */
  readonly pid: number;
  /** Stops the server (SIGTERM, then SIGKILL after 5 s) and waits for it. */
  stop(): Promise<void>;
  /** Kills the server with `signal` without waiting for a clean stop (for fault tests). */
  kill(signal?: Deno.Signal): Promise<void>;
  /**
   * Rewrites the configuration with a new `authorization` block and makes the
   * server reload it (SIGHUP); resolves once the server says it reloaded.
   *
   * @throws {UnavailableError} When the server refuses the new configuration.
   */
  reload(authorization: string): Promise<void>;
  /** Resolves when the process has exited, for whatever reason. */
  readonly exited: Promise<Deno.CommandStatus>;
}

/**
 * Kills a nats-server left running by a previous manager that died without
 * stopping it (its pid file names it), so that its port and store are free.
 */
async function killStale(pidFile: string, configFile: string): Promise<void> {
  let pid: number;
  try {
    pid = Number((await Deno.readTextFile(pidFile)).trim());
  } catch {
    return;
  }
  const alive = async () => {
    try {
      const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
      return cmdline.includes(configFile);
    } catch {
      return false;
    }
  };
  if (!pid || !(await alive())) return;
  try {
    Deno.kill(pid, "SIGKILL");
  } catch { /* gone */ }
  for (let i = 0; i < 100 && await alive(); i++) await new Promise((r) => setTimeout(r, 20));
}

/** Returns a TCP port that was free a moment ago on `host`. */
export function freePort(host = "127.0.0.1"): number {
  const listener = Deno.listen({ hostname: host, port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Waits until something accepts TCP connections on host:port. */
export async function waitForPort(
  host: string,
  port: number,
  timeoutMs: number,
  child?: Deno.ChildProcess,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let exited = false;
  child?.status.then(() => exited = true);
  while (Date.now() < deadline) {
    if (exited) throw new UnavailableError(`nats-server exited before listening on ${host}:${port}`);
    try {
      const conn = await Deno.connect({ hostname: host, port });
      conn.close();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 25));
    }
  }
  throw new UnavailableError(`Nothing listens on ${host}:${port} after ${timeoutMs} ms`);
}

/**
 * Starts `nats-server -js` with a generated configuration and waits until it
 * accepts clients.
 *
 * @throws {UnavailableError} When nats-server is missing or does not start.
 */
export async function startNatsServer(options: NatsServerOptions): Promise<NatsServer> {
  const host = options.host ?? "127.0.0.1";
  const port = options.port || freePort(host);
  const command = options.command ?? Deno.env.get("PARALLELIC_NATS_SERVER") ?? "nats-server";
  await Deno.mkdir(options.storeDir, { recursive: true });
  const configFile = join(options.storeDir, "nats-server.conf");
  const pidFile = join(options.storeDir, "nats-server.pid");
  await killStale(pidFile, configFile);
  const writeConfig = async (authorization: string) => {
    const config = [
      `listen: "${host}:${port}"`,
      `pid_file: ${JSON.stringify(pidFile)}`,
      `jetstream { store_dir: ${JSON.stringify(options.storeDir)} }`,
      ...(options.cluster
        ? [
          `server_name: ${JSON.stringify(options.cluster.serverName)}`,
          `cluster { name: ${
            JSON.stringify(options.cluster.name)
          }, listen: "${host}:${options.cluster.port}", routes: [${
            options.cluster.routes.map((r) => JSON.stringify(r)).join(", ")
          }] }`,
        ]
        : []),
      `max_payload: 8MB`,
      options.tls
        ? `tls { cert_file: ${JSON.stringify(options.tls.certFile)}, key_file: ${JSON.stringify(options.tls.keyFile)} }`
        : "",
      authorization,
      options.extraConfig ?? "",
    ].join("\n");
    await Deno.writeTextFile(configFile, config + "\n", { mode: 0o600 });
  };
  await writeConfig(options.authorization ?? "");
  let child: Deno.ChildProcess;
  try {
    child = new Deno.Command(command, {
      args: ["-c", configFile],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
  } catch (e) {
    throw new UnavailableError(
      `Cannot start '${command}' as ${(e as Error).message}: install it with 'apt-get install -y nats-server'`,
      { cause: e, code: "nats_server_missing" },
    );
  }
  // Keep the last lines of stderr for the error message, and drain the pipe;
  // count reloads so that reload() knows when the new configuration is live.
  let tail = "";
  let reloads = 0;
  let reloadError = "";
  const reloaded = new Set<() => void>();
  const drained = (async () => {
    const decoder = new TextDecoder();
    let line = "";
    for await (const chunk of child.stderr) {
      const text = decoder.decode(chunk);
      tail = (tail + text).slice(-4000);
      const lines = (line + text).split("\n");
      line = lines.pop()!;
      for (const l of lines) {
        if (l.includes("Reloaded server configuration")) reloads++;
        else if (/Failed to reload|reload.*error/i.test(l)) (reloadError = l, reloads++);
        else continue;
        for (const wake of reloaded) wake();
      }
    }
  })().catch(() => {});
  try {
    await waitForPort(host, port, 15_000, child);
  } catch (e) {
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
    await child.status;
    await drained;
    throw new UnavailableError(`${(e as Error).message}\n${tail.trim()}`, { cause: e, code: "nats_server_failed" });
  }
  options.log?.info("nats:started", { url: `nats://${host}:${port}`, pid: child.pid });
  let stopped: Promise<void> | undefined;
  const stop = (signal: Deno.Signal, graceMs: number) => {
    stopped ??= (async () => {
      try {
        child.kill(signal);
      } catch { /* already exited */ }
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch { /* exited */ }
      }, graceMs);
      await child.status;
      clearTimeout(timer);
      await drained;
      options.log?.info("nats:stopped", { pid: child.pid });
    })();
    return stopped;
  };
  let reloading = Promise.resolve();
  const reload = (authorization: string) =>
    reloading = reloading.catch(() => {}).then(async () => {
      const before = reloads;
      await writeConfig(authorization);
      reloadError = "";
      const done = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => {
          reloaded.delete(wake);
          reject(new UnavailableError(`nats-server did not reload its configuration within 10 s`));
        }, 10_000);
        const wake = () => {
          if (reloads === before) return;
          clearTimeout(timer);
          reloaded.delete(wake);
          if (reloadError) reject(new UnavailableError(`nats-server refused its new configuration: ${reloadError}`));
          else resolve();
        };
        reloaded.add(wake);
      });
      child.kill("SIGHUP");
      await done;
    });
  return {
    url: `nats://${host}:${port}`,
    port,
    pid: child.pid,
    stop: () => stop("SIGTERM", 5000),
    kill: (signal = "SIGKILL") => stop(signal, 0),
    exited: child.status,
    reload,
  };
}

/** Servers routed into one NATS cluster with clustered JetStream. */
export interface NatsCluster {
  servers: NatsServer[];
  /** Every client URL, comma-separated (what `--nats` takes). */
  urls: string;
}

/**
 * Starts `size` nats-servers on free loopback ports, routed into cluster
 * `name`, each storing JetStream under `storeDir/n<i>`, and waits until
 * JetStream has a meta leader: replicated streams and buckets on one machine,
 * for tests and benchmarks.
 *
 * @throws {UnavailableError} When JetStream elects no leader within 30 s (the servers are stopped).
 */
export async function startNatsCluster(storeDir: string, size = 3, name = "parallelic-test"): Promise<NatsCluster> {
  const routePorts = Array.from({ length: size }, () => freePort());
  const servers = await Promise.all(routePorts.map((port, i) =>
    startNatsServer({
      storeDir: join(storeDir, `n${i}`),
      port: 0,
      cluster: {
        name,
        serverName: `n${i}`,
        port,
        routes: routePorts.filter((p) => p !== port).map((p) => `nats-route://127.0.0.1:${p}`),
      },
    })
  ));
  const urls = servers.map((s) => s.url).join(",");
  const nc = await connect({ servers: urls.split(",") });
  try {
    for (const deadline = Date.now() + 30_000;;) {
      try {
        await (await jetstreamManager(nc)).getAccountInfo();
        break;
      } catch {
        if (Date.now() > deadline) {
          await Promise.all(servers.map((s) => s.stop()));
          throw new UnavailableError("Timed out after 30000 ms waiting for a JetStream meta leader");
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } finally {
    await nc.close();
  }
  return { servers, urls };
}
