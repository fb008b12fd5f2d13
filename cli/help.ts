/**
 * The usage text: of the whole program, and of each subcommand (`parallelic
 * COMMAND --help`), with the flags each subcommand takes.
 *
 * @module
 */
import { ValidationError } from "../core/errors.ts";
import type { FlagSpec } from "./args.ts";
import { MANAGER_SETTINGS, NODE_SETTINGS, type Settings } from "./config.ts";
import { NATS_CLIENT_FLAGS } from "./security_flags.ts";

/** The program's usage. */
export const HELP = `parallelic: run many instances of a task over many nodes
  parallelic COMMAND --help   a command's usage and flags;  parallelic --version

Server (every flag also comes from --config FILE ([manager] / [node] tables) or PARALLELIC_<FLAG>):
  parallelic manager [--data-dir DIR] [--port 8080] [--host 127.0.0.1] [--nats URL]
                     [--nats-port 4222] [--local-node|--no-local-node] [--slots N]
                     [--lease-ms 5000] [--heartbeat-ms 1000] [--grace 30s] [--replicas 1]
                     [--max-package-size 1GiB] [--max-data-size 256GiB] [--max-data-files 1000000]
                     [--cache-size 10GiB]
                     [--tls-cert F --tls-key F] [--nats-tls-cert F --nats-tls-key F]
                     [--max-body-bytes N] [--rate-limit N] [--rate-burst N] [--audit-retention-days N]
                     [--header-timeout 10s] [--idle-timeout 60s] [--max-connections-per-client 64]
                     [--max-submitter-priority 0-100]
  parallelic node --nats nats://HOST:4222 [--slots N] [--name NAME] [--work-dir DIR] [--label k=v]
                  [--join-token-file F | PARALLELIC_JOIN_TOKEN=... | --join-token T]
                  [--run-as USER | --run-as-range 20000-29999] [--grace 30s] [--metrics-port N]
                  [--cache-size 10GiB]
  both:           [--nats-ca F] [--nats-cert F --nats-key F]
                  [--nats-seed-file F | --nats-user U --nats-password-file F]  (external NATS)

Client (--manager URL, --token T, --ca-file F; or PARALLELIC_MANAGER, PARALLELIC_TOKEN, PARALLELIC_CA_FILE, or
'parallelic login'):
  parallelic submit PATH|FILE.zip [--wait|--no-wait] [--json] [--strict] [--after ID[,ID]]
                  [--set task.instances=5 ...]   (TOML values; --strict: refuse what no node could run)
  parallelic status [ID] [--json] [--limit 100]
  parallelic wait ID [--timeout 1h] [--json]   until it ends: exit 0 succeeded, 1 failed, 2 cancelled, 3 timed out
  parallelic logs ID [--instance N | --finalize] [--follow]
  parallelic results ID [-o DIR|FILE.zip] [--instance N | --finalize]
  parallelic cancel ID
  parallelic rerun ID [--failed | --instances 3,7-9 | --finalize]   run again, in the same task, once it ended
  parallelic set ID priority=80             change a running task's priority
  parallelic hold ID                     dispatch nothing new of a task (what runs goes on)
  parallelic release ID                  undo a hold
  parallelic explain ID [--instance N]      why it waits (or what happened)
  parallelic rm ID                       delete a finished task, its outputs and logs
  parallelic data put NAME PATH [--shared]   upload a file or folder as a new version of data set NAME
                                         (a new data set is yours alone unless --shared; --no-shared unshares)
  parallelic data share|unshare NAME     let every user see and use NAME, or only you (and admins)
  parallelic data ls [NAME] [--json]
  parallelic data rm NAME[@VERSION]
  parallelic nodes [ls | drain NAME | resume NAME]
  parallelic login --manager URL --token TOKEN [--ca-file F]   saved for later commands
  parallelic config show [manager|node] [--config FILE]   the effective configuration and where each value came from
  parallelic doctor [--nats URL] [--data-dir DIR] [--work-dir DIR]   checks the set-up, says what to fix

Admin:
  parallelic users [ls | add NAME --role admin|submitter|viewer | rm NAME]
  parallelic tokens rotate NAME
  parallelic audit [--limit 100]
  parallelic nodes token [--rotate]      the join token nodes need
  parallelic nodes forget NAME           remove a node's NATS user
`;

const COMMON = { "log-level": "string", "log-format": "string", help: "boolean" } as const;
const CLIENT = { ...COMMON, manager: "string", token: "string", "ca-file": "string" } as const;

/** The flags of each client subcommand: any other is an error that names these. */
export const CLIENT_COMMAND_FLAGS: Record<string, FlagSpec> = {
  submit: { ...CLIENT, wait: "boolean", json: "boolean", set: "list", strict: "boolean", after: "string" },
  status: { ...CLIENT, json: "boolean", limit: "string" },
  wait: { ...CLIENT, timeout: "string", json: "boolean" },
  logs: { ...CLIENT, instance: "string", finalize: "boolean", follow: "boolean" },
  results: { ...CLIENT, o: "string", output: "string", instance: "string", finalize: "boolean" },
  cancel: CLIENT,
  set: CLIENT,
  hold: CLIENT,
  release: CLIENT,
  rerun: { ...CLIENT, failed: "boolean", instances: "string", finalize: "boolean" },
  explain: { ...CLIENT, instance: "string" },
  rm: CLIENT,
  data: { ...CLIENT, json: "boolean", shared: "boolean" },
  nodes: { ...CLIENT, json: "boolean", rotate: "boolean" },
  login: CLIENT,
  doctor: { ...CLIENT, nats: "string", "data-dir": "string", "work-dir": "string", ...NATS_CLIENT_FLAGS },
  users: { ...CLIENT, role: "string", json: "boolean" },
  tokens: CLIENT,
  audit: { ...CLIENT, limit: "string", json: "boolean" },
};

/**
 * Flags of a client subcommand that apply to some of its verbs only (`nodes drain` prints no list: `--json` is for
 * `nodes ls`), by flag: the verbs (the first argument; "" when none is given) they apply to.
 */
export const VERB_FLAGS: Record<string, Record<string, readonly string[]>> = {
  data: { json: ["ls"], shared: ["put"] },
  nodes: { json: ["ls", ""], rotate: ["token"] },
  users: { json: ["ls", "", "add"], role: ["add"] },
};

/**
 * Throws a usage error when one of `flags` given to `parallelic COMMAND VERB` does not apply to that verb, rather
 * than ignore it.
 */
export function checkVerbFlags(command: string, verb: string | undefined, flags: Record<string, unknown>): void {
  for (const [flag, verbs] of Object.entries(VERB_FLAGS[command] ?? {})) {
    if (flags[flag] === undefined || verbs.includes(verb ?? "")) continue;
    const named = verbs.filter((v) => v !== "").map((v) => `'parallelic ${command} ${v}'`).join(" and ");
    throw new ValidationError(
      `Flag '--${flag}' does not apply to 'parallelic ${command}${verb ? ` ${verb}` : ""}': it is for ${named}`,
      { code: "usage" },
    );
  }
}

/** The server subcommands' settings (their flags). */
const SERVER_SETTINGS: Record<string, Settings> = { manager: MANAGER_SETTINGS, node: NODE_SETTINGS };

/** Whether `argv` (a subcommand's arguments) asks for help: `--help` or `-h` before any `--`. */
export function wantsHelp(argv: string[]): boolean {
  const end = argv.indexOf("--");
  const flags = end < 0 ? argv : argv.slice(0, end);
  return flags.some((a) => a === "--help" || a === "-h" || a === "--help=true");
}

/**
 * The usage of subcommand `command`: its lines of {@linkcode HELP} and its
 * flags; null for an unknown one.
 */
export function commandHelp(command: string): string | null {
  const lines = HELP.split("\n");
  const usage: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    if (!lines[i].trimStart().startsWith(`parallelic ${command} `) && lines[i].trim() !== `parallelic ${command}`) {
      continue;
    }
    usage.push(lines[i].trim());
    // Continuation lines are indented deeper than "parallelic".
    const indent = lines[i].indexOf("parallelic");
    while (i + 1 < lines.length && /^\s+\[/.test(lines[i + 1]) && lines[i + 1].search(/\S/) > indent) {
      usage.push(`  ${lines[++i].trim()}`);
    }
  }
  if (usage.length === 0) return null;
  const server = SERVER_SETTINGS[command];
  if (server) {
    const rows = Object.entries(server).map(([key, s]) => `  --${key.padEnd(22)} ${s.help}`);
    return [
      "Usage:",
      ...usage.map((l) => `  ${l}`),
      "",
      "Flags (also from --config FILE or PARALLELIC_<FLAG>):",
      `  --${"config".padEnd(22)} a TOML file with [manager] and [node] tables`,
      ...rows,
    ].join("\n");
  }
  if (command === "config") {
    return ["Usage:", ...usage.map((l) => `  ${l}`), "  (and any flag of that command)"].join("\n");
  }
  const flags = Object.keys(CLIENT_COMMAND_FLAGS[command] ?? {}).map((k) => `--${k}`).join(" ");
  return [
    "Usage:",
    ...usage.map((l) => `  ${l}`),
    "",
    `Flags: ${flags}`,
    "The manager's URL and token come from --manager and --token, PARALLELIC_MANAGER and PARALLELIC_TOKEN, or",
    "'parallelic login'.",
  ].join("\n");
}
