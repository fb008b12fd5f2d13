/**
 * Parallelic's single entry point: the manager, the compute node and the
 * CLI, by subcommand. Only wiring lives here.
 *
 * @module
 */
import { defaultDataDir, usage } from "./cli/client.ts";
import { MANAGER_SETTINGS, NODE_SETTINGS, resolveConfig, showConfig } from "./cli/config.ts";
import { commandHelp, HELP, wantsHelp } from "./cli/help.ts";
import { logger } from "./cli/log_flags.ts";
import { CLIENT_COMMANDS, runClientCommand } from "./cli/run.ts";
import { certPair, gatewayLimits, joinToken, natsCredentials, natsTls } from "./cli/security_flags.ts";
import { join } from "./core/posix_path.ts";
import { VERSION } from "./core/version.ts";

/**
 * The modules only the manager and the node load, imported when their command
 * runs. Their specifiers are not literals, so that `deno run` does not read and
 * hash every module of the server at each start of a client command (which
 * loads none of them); `deno compile` includes them by this list
 * (tools/compile.ts), and their types still come from them.
 */
export const LATE_IMPORTS = {
  manager: "./manager/mod.ts",
  package: "./core/package.ts",
  node: "./node/agent.ts",
} as const;
const late = (which: keyof typeof LATE_IMPORTS): Promise<unknown> => import(LATE_IMPORTS[which]);

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

/** `parallelic manager`: starts a manager and runs it until SIGINT or SIGTERM. */
async function runManager(rest: string[]): Promise<number> {
  const { values: v } = await resolveConfig(rest, "manager", MANAGER_SETTINGS);
  const log = logger(v);
  const [{ startManager }, { DEFAULT_PACKAGE_LIMITS }] = await Promise.all([
    late("manager") as Promise<typeof import("./manager/mod.ts")>,
    late("package") as Promise<typeof import("./core/package.ts")>,
  ]);
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

/** `parallelic node`: starts a compute node and runs it until SIGINT or SIGTERM. */
async function runNode(rest: string[]): Promise<number> {
  // Hidden, for benchmarks only (bench/dispatch.ts): instances end at once with exit 0, nothing runs.
  const noop = rest.includes("--bench-noop");
  const { values: v } = await resolveConfig(rest.filter((a) => a !== "--bench-noop"), "node", NODE_SETTINGS);
  const natsUrl = (v.nats as string | undefined) ?? usage("Usage: parallelic node --nats nats://HOST:4222");
  const name = v.name as string | undefined;
  const { startNode } = await (late("node") as Promise<typeof import("./node/agent.ts")>);
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
    case "manager":
      return await runManager(rest);
    case "node":
      return await runNode(rest);
    case "config": {
      const [verb, which = "manager", ...more] = rest;
      if (verb !== "show" || (which !== "manager" && which !== "node")) {
        usage("Usage: parallelic config show [manager|node] [--config FILE] [flags]");
      }
      const settings = which === "manager" ? MANAGER_SETTINGS : NODE_SETTINGS;
      console.log(showConfig(await resolveConfig(more, which, settings), settings));
      return 0;
    }
    default:
      if (CLIENT_COMMANDS.includes(command)) return await runClientCommand(command, rest);
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
