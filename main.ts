/**
 * Parallelic's single entry point: the manager, the compute node and the
 * CLI, by subcommand. Only wiring lives here.
 *
 * @module
 */
import { join } from "node:path";
import { intFlag, parseArgs } from "./cli/args.ts";
import { Client, defaultDataDir, resolveSettings, usage } from "./cli/client.ts";
import { doctor, printChecks } from "./cli/doctor.ts";
import { cancel, explain, login, nodes, showLogs, showStatus, submit } from "./cli/commands.ts";
import { createLogger, type LogLevel } from "./core/log.ts";
import { parseDurationMs } from "./core/task_toml.ts";
import { startManager } from "./manager/mod.ts";
import { startNode } from "./node/agent.ts";

const HELP = `parallelic: run many instances of a task over many nodes

Server:
  parallelic manager [--data-dir DIR] [--port 8080] [--host 127.0.0.1] [--nats URL]
                     [--nats-port 4222] [--local-node|--no-local-node] [--slots N]
                     [--lease-ms 5000] [--heartbeat-ms 1000] [--grace 30s]
  parallelic node --nats nats://HOST:4222 [--slots N] [--name NAME] [--work-dir DIR] [--label k=v]
                  [--grace 30s] [--metrics-port N]

Client (--manager URL, --token T; or PARALLELIC_MANAGER, PARALLELIC_TOKEN, or 'parallelic login'):
  parallelic submit PATH|FILE.zip [--wait|--no-wait]
  parallelic status [ID] [--json]
  parallelic logs ID [--instance N] [--follow]
  parallelic cancel ID
  parallelic explain ID [--instance N]      why it waits (or what happened)
  parallelic nodes [ls | drain NAME | resume NAME]
  parallelic login --manager URL --token TOKEN
  parallelic doctor [--nats URL] [--data-dir DIR] [--work-dir DIR]   checks the set-up, says what to fix
`;

const COMMON = { "log-level": "string", "log-format": "string", help: "boolean" } as const;
const CLIENT = { ...COMMON, manager: "string", token: "string", json: "boolean" } as const;

function logger(flags: Record<string, unknown>) {
  return createLogger({
    level: (flags["log-level"] as LogLevel) ?? "info",
    format: flags["log-format"] === "json" ? "json" : "text",
  });
}

/** Resolves at the first SIGINT or SIGTERM; a second one exits at once. */
function waitForSignal(): Promise<void> {
  return new Promise((resolve) => {
    let seen = false;
    const stop = () => {
      if (seen) Deno.exit(130);
      seen = true;
      resolve();
    };
    Deno.addSignalListener("SIGINT", stop);
    Deno.addSignalListener("SIGTERM", stop);
  });
}

function durationFlag(p: { flags: Record<string, unknown> }, name: string): number | undefined {
  const v = p.flags[name];
  if (v === undefined) return undefined;
  try {
    return parseDurationMs(String(v));
  } catch (e) {
    return usage(`Flag '--${name}': ${(e as Error).message}`);
  }
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
        grace: "string",
      });
      const log = logger(p.flags);
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
        graceMs: durationFlag(p, "grace"),
        log,
      });
      console.error(`
Parallelic manager ready
  gateway:  ${manager.url}
  web UI:   ${manager.url}/  (sign in with the token)
  nats:     ${manager.natsUrl}  (nodes join with: deno task node --nats=${manager.natsUrl})
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
        grace: "string",
        "metrics-port": "string",
      });
      const natsUrl = (p.flags.nats as string) ?? usage("Usage: parallelic node --nats nats://HOST:4222");
      const name = p.flags.name as string | undefined;
      const node = await startNode({
        natsUrl,
        name,
        slots: intFlag(p, "slots"),
        workDir: (p.flags["work-dir"] as string) ?? join(defaultDataDir(), `node-${name ?? Deno.pid}`),
        labels: parseLabels(p.flags.label),
        graceMs: durationFlag(p, "grace"),
        metricsPort: intFlag(p, "metrics-port"),
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
    case "explain":
    case "nodes":
    case "doctor":
    case "login": {
      const p = parseArgs(rest, {
        ...CLIENT,
        wait: "boolean",
        instance: "string",
        follow: "boolean",
        nats: "string",
        "data-dir": "string",
        "work-dir": "string",
      });
      const client = new Client(await resolveSettings(p.flags as { manager?: string; token?: string }));
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
        case "explain":
          return await explain(client, need("ID [--instance N]"), intFlag(p, "instance"));
        case "nodes":
          return await nodes(client, p._, json);
        case "login":
          return await login(client);
        case "doctor":
          return printChecks(
            await doctor({
              client,
              natsUrl: (p.flags.nats as string) ?? "nats://127.0.0.1:4222",
              dataDir: (p.flags["data-dir"] as string) ?? defaultDataDir(),
              workDir: p.flags["work-dir"] as string | undefined,
            }),
          );
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
      "UnavailableError",
    ];
    console.error(`error: ${known.includes(err.name) ? err.message : err.stack ?? err}`);
    Deno.exit(1);
  }
}
