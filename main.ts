/**
 * Parallelic's single entry point: the manager, the compute node and the
 * CLI, by subcommand. Only wiring lives here.
 *
 * @module
 */
import { join } from "node:path";
import { intFlag, parseArgs, sizeFlag } from "./cli/args.ts";
import { Client, defaultDataDir, resolveSettings, usage } from "./cli/client.ts";
import { cancel, login, nodes, showLogs, showStatus, submit } from "./cli/commands.ts";
import { dataLs, dataPut, dataRm, results, rmTask } from "./cli/data.ts";
import { DEFAULT_PACKAGE_LIMITS } from "./core/package.ts";
import { createLogger, type LogLevel } from "./core/log.ts";
import { startManager } from "./manager/mod.ts";
import { startNode } from "./node/agent.ts";

const HELP = `parallelic: run many instances of a task over many nodes

Server:
  parallelic manager [--data-dir DIR] [--port 8080] [--host 127.0.0.1] [--nats URL]
                     [--nats-port 4222] [--local-node|--no-local-node] [--slots N]
                     [--lease-ms 5000] [--heartbeat-ms 1000] [--max-package-size 1GiB]
                     [--max-data-size 256GiB] [--cache-size 10GiB]
  parallelic node --nats nats://HOST:4222 [--slots N] [--name NAME] [--work-dir DIR] [--label k=v]
                  [--cache-size 10GiB]

Client (--manager URL, --token T; or PARALLELIC_MANAGER, PARALLELIC_TOKEN, or 'parallelic login'):
  parallelic submit PATH|FILE.zip [--wait|--no-wait]
  parallelic status [ID] [--json]
  parallelic logs ID [--instance N | --finalize] [--follow]
  parallelic results ID [-o DIR|FILE.zip] [--instance N | --finalize]
  parallelic cancel ID
  parallelic rm ID                       delete a finished task, its outputs and logs
  parallelic data put NAME PATH          upload a file or folder as a new version of data set NAME
  parallelic data ls [NAME] [--json]
  parallelic data rm NAME[@VERSION]
  parallelic nodes [ls | drain NAME | resume NAME]
  parallelic login --manager URL --token TOKEN
`;

const COMMON = { "log-level": "string", "log-format": "string", help: "boolean" } as const;
const CLIENT = { ...COMMON, manager: "string", token: "string", json: "boolean" } as const;

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
        "max-package-size": "string",
        "max-data-size": "string",
        "cache-size": "string",
      });
      const maxPackageBytes = sizeFlag(p, "max-package-size") ?? DEFAULT_PACKAGE_LIMITS.maxPackageBytes;
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
        limits: {
          ...DEFAULT_PACKAGE_LIMITS,
          maxPackageBytes,
          maxUnpackedBytes: Math.max(DEFAULT_PACKAGE_LIMITS.maxUnpackedBytes, 4 * maxPackageBytes),
        },
        maxDataSetBytes: sizeFlag(p, "max-data-size"),
        cacheBytes: sizeFlag(p, "cache-size"),
        log,
      });
      console.error(`
Parallelic manager ready
  gateway:  ${manager.url}
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
        "cache-size": "string",
      });
      const natsUrl = (p.flags.nats as string) ?? usage("Usage: parallelic node --nats nats://HOST:4222");
      const name = p.flags.name as string | undefined;
      const node = await startNode({
        natsUrl,
        name,
        slots: intFlag(p, "slots"),
        workDir: (p.flags["work-dir"] as string) ?? join(defaultDataDir(), `node-${name ?? Deno.pid}`),
        labels: parseLabels(p.flags.label),
        cacheBytes: sizeFlag(p, "cache-size"),
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
    case "results":
    case "rm":
    case "data": {
      const p = parseArgs(rest, {
        ...CLIENT,
        wait: "boolean",
        instance: "string",
        follow: "boolean",
        finalize: "boolean",
        o: "string",
        output: "string",
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
            need("ID [--instance N | --finalize] [--follow]"),
            p.flags.finalize === true ? "finalize" : intFlag(p, "instance", 0)!,
            p.flags.follow === true,
          );
        case "results":
          return await results(client, need("ID [-o DIR|FILE.zip] [--instance N | --finalize]"), {
            output: (p.flags.o ?? p.flags.output) as string | undefined,
            instance: intFlag(p, "instance"),
            finalize: p.flags.finalize === true,
          });
        case "rm":
          return await rmTask(client, need("ID"));
        case "data": {
          const [verb, arg, path] = p._;
          if (verb === "put" && arg && path) return await dataPut(client, arg, path);
          if (verb === "ls") return await dataLs(client, arg, json);
          if (verb === "rm" && arg) return await dataRm(client, arg);
          return usage("Usage: parallelic data put NAME PATH | data ls [NAME] | data rm NAME[@VERSION]");
        }
        case "cancel":
          return await cancel(client, need("ID"));
        case "nodes":
          return await nodes(client, p._, json);
        case "login":
          return await login(client);
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
