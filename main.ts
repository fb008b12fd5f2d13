/**
 * Parallelic's single entry point: the manager, the compute node and the
 * CLI, by subcommand. Only wiring lives here.
 *
 * @module
 */
import { join } from "node:path";
import { intFlag, parseArgs } from "./cli/args.ts";
import { Client, defaultDataDir, resolveSettings, usage } from "./cli/client.ts";
import { MANAGER_SETTINGS, NODE_SETTINGS, resolveConfig, showConfig } from "./cli/config.ts";
import { doctor, printChecks } from "./cli/doctor.ts";
import { checkVerbFlags, CLIENT_COMMAND_FLAGS, commandHelp, HELP, wantsHelp } from "./cli/help.ts";
import { certPair, gatewayLimits, joinToken, natsCredentials, natsTls } from "./cli/security_flags.ts";
import { cancel, explain, login, nodes, showLogs, showStatus, submit } from "./cli/commands.ts";
import { audit, nodesSecurity, tokens, users } from "./cli/security_commands.ts";
import { dataLs, dataPut, dataRm, dataShare, results, rmTask } from "./cli/data.ts";
import { holdTask, rerun, setTask, waitTask } from "./cli/task_commands.ts";
import { DEFAULT_PACKAGE_LIMITS } from "./core/package.ts";
import { createLogger, type LogLevel } from "./core/log.ts";
import { startManager } from "./manager/mod.ts";
import { startNode, VERSION } from "./node/agent.ts";

function logger(flags: Record<string, unknown>) {
  const level = flags["log-level"] ?? "info";
  if (!["debug", "info", "warn", "error"].includes(String(level))) {
    usage(`Log level '${level}' must be one of debug, info, warn, error`);
  }
  return createLogger({
    level: (flags["log-level"] as LogLevel) ?? "info",
    format: flags["log-format"] === "json" ? "json" : "text",
    // Step timestamps for latency work (bench/latency.ts --trace); unset, steps cost nothing.
    traceFile: Deno.env.get("PARALLELIC_TRACE") || undefined,
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
  if (command === "--version" || command === "version") {
    console.log(`parallelic ${VERSION}`);
    return 0;
  }
  // Help starts nothing: `manager --help` prints the manager's flags and exits.
  const help = wantsHelp(rest) ? commandHelp(command) : null;
  if (help) {
    console.log(help);
    return 0;
  }
  switch (command) {
    case "manager": {
      const { values: v } = await resolveConfig(rest, "manager", MANAGER_SETTINGS);
      const log = logger(v);
      const retentionDays = v["audit-retention-days"] as number | undefined;
      const maxPackageBytes = (v["max-package-size"] as number | undefined) ?? DEFAULT_PACKAGE_LIMITS.maxPackageBytes;
      const manager = await startManager({
        dataDir: (v["data-dir"] as string | undefined) ?? defaultDataDir(),
        port: (v.port as number | undefined) ?? 8080,
        host: v.host as string | undefined,
        natsUrl: v.nats as string | undefined,
        natsPort: (v["nats-port"] as number | undefined) ?? 4222,
        natsHost: v["nats-host"] as string | undefined,
        localNode: v["local-node"] as boolean | undefined,
        slots: v.slots as number | undefined,
        leaseMs: v["lease-ms"] as number | undefined,
        heartbeatMs: v["heartbeat-ms"] as number | undefined,
        graceMs: v.grace as number | undefined,
        replicas: v.replicas as number | undefined,
        natsCredentials: await natsCredentials(v),
        natsTls: natsTls(v),
        natsServerTls: certPair(v, "nats-tls-cert", "nats-tls-key"),
        gatewayTls: certPair(v, "tls-cert", "tls-key"),
        frontDoor: {
          headerTimeoutMs: v["header-timeout"] as number | undefined,
          idleTimeoutMs: v["idle-timeout"] as number | undefined,
          maxConnectionsPerClient: v["max-connections-per-client"] as number | undefined,
        },
        gateway: { ...gatewayLimits(v), maxSubmitterPriority: v["max-submitter-priority"] as number | undefined },
        auditRetentionMs: retentionDays === undefined ? undefined : retentionDays * 24 * 3600 * 1000,
        limits: {
          ...DEFAULT_PACKAGE_LIMITS,
          maxPackageBytes,
          maxUnpackedBytes: Math.max(DEFAULT_PACKAGE_LIMITS.maxUnpackedBytes, 4 * maxPackageBytes),
        },
        maxDataSetBytes: v["max-data-size"] as number | undefined,
        maxDataSetFiles: v["max-data-files"] as number | undefined,
        cacheBytes: v["cache-size"] as number | undefined,
        publicUrl: v["public-url"] as string | undefined,
        notify: {
          secretFile: v["notify-secret-file"] as string | undefined,
          allow: v["notify-allow"] as string[] | undefined,
          firstRetryMs: v["notify-retry"] as number | undefined,
          timeoutMs: v["notify-timeout"] as number | undefined,
        },
        log,
      });
      console.error(`
Parallelic manager ready
  gateway:  ${manager.url}
  web UI:   ${manager.url}/  (sign in with the token)
  nats:     ${manager.natsUrl}
  nodes:    ${
        manager.joinToken
          ? `PARALLELIC_JOIN_TOKEN=$(cat ${manager.joinTokenFile}) deno task node --nats=${manager.natsUrl}`
          : "give each node its NATS credentials (external NATS server)"
      }
  token:    ${manager.token ? `in ${manager.tokenFile}` : "from PARALLELIC_TOKEN"}
  webhooks: signed with the key in ${manager.notifySecretFile} (see docs/operations.md)
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
      // Hidden, for benchmarks only (bench/dispatch.ts): instances end at once with exit 0, nothing runs.
      const noop = rest.includes("--bench-noop");
      const { values: v } = await resolveConfig(rest.filter((a) => a !== "--bench-noop"), "node", NODE_SETTINGS);
      const natsUrl = (v.nats as string | undefined) ?? usage("Usage: parallelic node --nats nats://HOST:4222");
      const name = v.name as string | undefined;
      const node = await startNode({
        natsUrl,
        name,
        slots: v.slots as number | undefined,
        workDir: (v["work-dir"] as string | undefined) ?? join(defaultDataDir(), `node-${name ?? Deno.pid}`),
        labels: parseLabels(v.label),
        graceMs: v.grace as number | undefined,
        metricsPort: v["metrics-port"] as number | undefined,
        joinToken: await joinToken(v),
        credentials: await natsCredentials(v),
        tls: natsTls(v),
        runAs: v["run-as"] as string | undefined,
        runAsRange: v["run-as-range"] as string | undefined,
        log: logger(v),
        cacheBytes: v["cache-size"] as number | undefined,
        noop,
      });
      await waitForSignal();
      await node.stop();
      return 0;
    }
    case "config": {
      const [verb, which = "manager", ...more] = rest;
      if (verb !== "show" || (which !== "manager" && which !== "node")) {
        usage("Usage: parallelic config show [manager|node] [--config FILE] [flags]");
      }
      const settings = which === "manager" ? MANAGER_SETTINGS : NODE_SETTINGS;
      console.log(showConfig(await resolveConfig(more, which, settings), settings));
      return 0;
    }
    case "submit":
    case "status":
    case "wait":
    case "logs":
    case "cancel":
    case "rerun":
    case "set":
    case "hold":
    case "release":
    case "explain":
    case "nodes":
    case "doctor":
    case "login":
    case "users":
    case "tokens":
    case "audit":
    case "results":
    case "rm":
    case "data": {
      const p = parseArgs(rest, CLIENT_COMMAND_FLAGS[command], command);
      if (p.flags.instance !== undefined && p.flags.finalize === true) {
        usage(`'parallelic ${command}' takes --instance N or --finalize, not both`);
      }
      checkVerbFlags(command, p._[0], p.flags);
      const client = new Client({
        ...await resolveSettings(p.flags as { manager?: string; token?: string; "ca-file"?: string }),
        log: logger(p.flags),
      });
      const json = p.flags.json === true;
      const id = p._[0];
      const need = (what: string) => id ?? usage(`Usage: parallelic ${command} ${what}`);
      switch (command) {
        case "submit":
          return await submit(
            client,
            need("PATH"),
            (p.flags.wait as boolean | undefined) ?? Deno.stdout.isTerminal(),
            json,
            (p.flags.set as string[] | undefined) ?? [],
            p.flags.strict === true,
            p.flags.after as string | undefined,
          );
        case "status":
          return await showStatus(client, id, json, intFlag(p, "limit"));
        case "wait":
          return await waitTask(client, need("ID [--timeout 1h]"), p.flags.timeout as string | undefined, json);
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
          if (verb === "put" && arg && path) {
            return await dataPut(client, arg, path, p.flags.shared as boolean | undefined);
          }
          if ((verb === "share" || verb === "unshare") && arg) return await dataShare(client, arg, verb === "share");
          if (verb === "ls") return await dataLs(client, arg, json);
          if (verb === "rm" && arg) return await dataRm(client, arg);
          return usage(
            "Usage: parallelic data put NAME PATH [--shared] | data share|unshare NAME | data ls [NAME] | data rm NAME[@VERSION]",
          );
        }
        case "cancel":
          return await cancel(client, need("ID"));
        case "set":
          return await setTask(client, need("ID priority=80"), p._.slice(1));
        case "hold":
        case "release":
          return await holdTask(client, need("ID"), command === "hold");
        case "rerun":
          return await rerun(client, need("ID [--failed | --instances 3,7-9 | --finalize]"), {
            failed: p.flags.failed === true,
            instances: p.flags.instances as string | undefined,
            finalize: p.flags.finalize === true,
          });
        case "explain":
          return await explain(client, need("ID [--instance N]"), intFlag(p, "instance"));
        case "nodes":
          return await nodesSecurity(client, p._, p.flags.rotate === true) ?? await nodes(client, p._, json);
        case "login":
          return await login(client);
        case "doctor":
          return printChecks(
            await doctor({
              client,
              natsUrl: (p.flags.nats as string) ?? "nats://127.0.0.1:4222",
              dataDir: (p.flags["data-dir"] as string) ?? defaultDataDir(),
              workDir: p.flags["work-dir"] as string | undefined,
              natsCredentials: await natsCredentials(p.flags),
              natsTls: natsTls(p.flags),
            }),
          );
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
