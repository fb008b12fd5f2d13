/**
 * Parallelic's single entry point: the manager, the compute node and the
 * CLI, by subcommand. Only wiring lives here.
 *
 * @module
 */
import { join } from "node:path";
import { intFlag, parseArgs } from "./cli/args.ts";
import { Client, defaultDataDir, resolveSettings, usage } from "./cli/client.ts";
import {
  certPair,
  gatewayLimits,
  joinToken,
  MANAGER_SECURITY_FLAGS,
  NATS_CLIENT_FLAGS,
  natsCredentials,
  natsTls,
  NODE_SECURITY_FLAGS,
} from "./cli/security_flags.ts";
import { cancel, login, nodes, showLogs, showStatus, submit } from "./cli/commands.ts";
import { audit, nodesSecurity, tokens, users } from "./cli/security_commands.ts";
import { createLogger, type LogLevel } from "./core/log.ts";
import { startManager } from "./manager/mod.ts";
import { startNode } from "./node/agent.ts";

const HELP = `parallelic: run many instances of a task over many nodes

Server:
  parallelic manager [--data-dir DIR] [--port 8080] [--host 127.0.0.1] [--nats URL]
                     [--nats-port 4222] [--local-node|--no-local-node] [--slots N]
                     [--lease-ms 5000] [--heartbeat-ms 1000]
                     [--tls-cert F --tls-key F] [--nats-tls-cert F --nats-tls-key F]
                     [--max-body-bytes N] [--rate-limit N] [--rate-burst N] [--audit-retention-days N]
  parallelic node --nats nats://HOST:4222 [--slots N] [--name NAME] [--work-dir DIR] [--label k=v]
                  [--join-token-file F | PARALLELIC_JOIN_TOKEN=... | --join-token T] [--run-as USER]
  both:           [--nats-ca F] [--nats-cert F --nats-key F]
                  [--nats-seed-file F | --nats-user U --nats-password-file F]  (external NATS)

Client (--manager URL, --token T; or PARALLELIC_MANAGER, PARALLELIC_TOKEN, or 'parallelic login'):
  parallelic submit PATH|FILE.zip [--wait|--no-wait]
  parallelic status [ID] [--json]
  parallelic logs ID [--instance N] [--follow]
  parallelic cancel ID
  parallelic nodes [ls | drain NAME | resume NAME]
  parallelic login --manager URL --token TOKEN

Admin:
  parallelic users [ls | add NAME --role admin|submitter|viewer | rm NAME]
  parallelic tokens rotate NAME
  parallelic audit [--limit 100]
  parallelic nodes token [--rotate]      the join token nodes need
  parallelic nodes forget NAME           remove a node's NATS user
`;

const COMMON = { "log-level": "string", "log-format": "string", help: "boolean" } as const;
const CLIENT = { ...COMMON, manager: "string", token: "string", "ca-file": "string", json: "boolean" } as const;

function logger(flags: Record<string, unknown>) {
  return createLogger({
    level: (flags["log-level"] as LogLevel) ?? "info",
    format: flags["log-format"] === "json" ? "json" : "text",
  });
}

function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    const stop = () => resolve();
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
}

function parseLabels(list: unknown): Record<string, string> {
  const labels: Record<string, string> = {};
  for (const item of (list as string[] | undefined) ?? []) {
    const [k, ...v] = item.split("=");
    if (!k || v.length === 0) usage(`Label '${item}' must be KEY=VALUE`);
    labels[k] = v.join("=");
  }
  return labels;
}

async function run(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (!command || command === "help" || command === "--help" || command === "-h") {
    console.log(HELP);
    return command ? 0 : 2;
  }
  switch (command) {
    case "manager": {
      const p = parseArgs(rest, {
        ...COMMON,
        "data-dir": "string",
        port: "string",
        host: "string",
        nats: "string",
        "nats-port": "string",
        "nats-host": "string",
        "local-node": "boolean",
        slots: "string",
        "lease-ms": "string",
        "heartbeat-ms": "string",
        ...NATS_CLIENT_FLAGS,
        ...MANAGER_SECURITY_FLAGS,
      });
      const log = logger(p.flags);
      const retentionDays = intFlag(p, "audit-retention-days");
      const dataDir = (p.flags["data-dir"] as string) ?? defaultDataDir();
      const manager = await startManager({
        dataDir,
        port: intFlag(p, "port", 8080),
        host: p.flags.host as string | undefined,
        natsUrl: p.flags.nats as string | undefined,
        natsPort: intFlag(p, "nats-port", 4222),
        natsHost: p.flags["nats-host"] as string | undefined,
        localNode: p.flags["local-node"] as boolean | undefined,
        slots: intFlag(p, "slots"),
        leaseMs: intFlag(p, "lease-ms"),
        heartbeatMs: intFlag(p, "heartbeat-ms"),
        natsCredentials: await natsCredentials(p),
        natsTls: natsTls(p),
        natsServerTls: certPair(p, "nats-tls-cert", "nats-tls-key"),
        gatewayTls: certPair(p, "tls-cert", "tls-key"),
        gateway: gatewayLimits(p),
        auditRetentionMs: retentionDays === undefined ? undefined : retentionDays * 24 * 3600 * 1000,
        log,
      });
      console.error(`
Parallelic manager ready
  gateway:  ${manager.url}
  nats:     ${manager.natsUrl}
  nodes:    ${
        manager.joinToken
          ? `PARALLELIC_JOIN_TOKEN=$(cat ${manager.joinTokenFile}) deno task node --nats=${manager.natsUrl}`
          : "give each node its NATS credentials (external NATS server)"
      }
  token:    ${manager.token ? `in ${manager.tokenFile}` : "from PARALLELIC_TOKEN"}
  submit:   export PARALLELIC_TOKEN=$(cat ${manager.tokenFile}); parallelic submit examples/hello
  curl:     curl -H "Authorization: Bearer $PARALLELIC_TOKEN" -H 'Content-Type: application/zip' \\
              --data-binary @task.zip ${manager.url}/api/v1/tasks
`);
      await waitForSignal();
      log.info("manager:stopping");
      await manager.stop();
      return 0;
    }
    case "node": {
      const p = parseArgs(rest, {
        ...COMMON,
        nats: "string",
        slots: "string",
        name: "string",
        "work-dir": "string",
        label: "list",
        ...NATS_CLIENT_FLAGS,
        ...NODE_SECURITY_FLAGS,
      });
      const natsUrl = (p.flags.nats as string) ?? usage("Usage: parallelic node --nats nats://HOST:4222");
      const name = p.flags.name as string | undefined;
      const node = await startNode({
        natsUrl,
        name,
        slots: intFlag(p, "slots"),
        workDir: (p.flags["work-dir"] as string) ?? join(defaultDataDir(), `node-${name ?? Deno.pid}`),
        labels: parseLabels(p.flags.label),
        joinToken: await joinToken(p),
        credentials: await natsCredentials(p),
        tls: natsTls(p),
        runAs: p.flags["run-as"] as string | undefined,
        log: logger(p.flags),
      });
      await waitForSignal();
      await node.stop();
      return 0;
    }
    case "submit":
    case "status":
    case "logs":
    case "cancel":
    case "nodes":
    case "login":
    case "users":
    case "tokens":
    case "audit": {
      const p = parseArgs(rest, {
        ...CLIENT,
        wait: "boolean",
        instance: "string",
        follow: "boolean",
        role: "string",
        limit: "string",
        rotate: "boolean",
      });
      const client = new Client(
        await resolveSettings(p.flags as { manager?: string; token?: string; "ca-file"?: string }),
      );
      const json = p.flags.json === true;
      const id = p._[0];
      const need = (what: string) => id ?? usage(`Usage: parallelic ${command} ${what}`);
      switch (command) {
        case "submit":
          return await submit(client, need("PATH"), (p.flags.wait as boolean | undefined) ?? Deno.stdout.isTerminal());
        case "status":
          return await showStatus(client, id, json);
        case "logs":
          return await showLogs(
            client,
            need("ID [--instance N] [--follow]"),
            intFlag(p, "instance", 0)!,
            p.flags.follow === true,
          );
        case "cancel":
          return await cancel(client, need("ID"));
        case "nodes":
          return await nodesSecurity(client, p._, p.flags.rotate === true) ?? await nodes(client, p._, json);
        case "login":
          return await login(client);
        case "users":
          return await users(client, p._, p.flags.role as string | undefined, json);
        case "tokens":
          return await tokens(client, p._);
        case "audit":
          return await audit(client, intFlag(p, "limit"), json);
      }
      return 2;
    }
    default:
      console.error(`Unknown command '${command}'.\n\n${HELP}`);
      return 2;
  }
}

if (import.meta.main) {
  try {
    Deno.exit(await run(Deno.args));
  } catch (e) {
    const err = e as Error;
    const known = [
      "ValidationError",
      "NotFoundError",
      "AuthError",
      "ConflictError",
      "TooLargeError",
      "RateLimitError",
      "UnavailableError",
    ];
    console.error(`error: ${known.includes(err.name) ? err.message : err.stack ?? err}`);
    Deno.exit(1);
  }
}
