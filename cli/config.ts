/**
 * Configuration of the manager and the node, from three places: a TOML file
 * (`--config parallelic.toml`, sections `[manager]` and `[node]`),
 * `PARALLELIC_*` environment variables, and flags; flags win over the
 * environment, which wins over the file. Every setting is declared once,
 * here, with its flag, its environment variable and its file key.
 *
 * @module
 */
import { ValidationError } from "../core/errors.ts";
import { parseBytes, parseDurationMs } from "../core/task_toml_values.ts";
import { type FlagSpec, parseArgs } from "./args.ts";

/** How a setting's text becomes a value. */
export type SettingType = "string" | "int" | "boolean" | "duration" | "size" | "list";

/** One setting. */
export interface Setting {
  type: SettingType;
  /** One line for `--help` and `config show`. */
  help: string;
  /** Masked in `config show`. */
  secret?: boolean;
}

/** Settings by flag name (also the file key; the env name is PARALLELIC_ + upper snake case). */
export type Settings = Record<string, Setting>;

const common: Settings = {
  "log-level": { type: "string", help: "debug, info, warn or error" },
  "log-format": { type: "string", help: "text or json" },
  // NATS client credentials and TLS, for an external NATS server (see SECURITY.md).
  "nats-user": { type: "string", help: "NATS user (external NATS)" },
  "nats-password-file": { type: "string", help: "file holding the NATS password" },
  "nats-seed-file": { type: "string", help: "file holding an nkey seed for NATS" },
  "nats-ca": { type: "string", help: "CA file to trust for NATS TLS" },
  "nats-cert": { type: "string", help: "client certificate for NATS TLS" },
  "nats-key": { type: "string", help: "client key for NATS TLS" },
};

/** The manager's settings. */
export const MANAGER_SETTINGS: Settings = {
  ...common,
  "data-dir": { type: "string", help: "Deno KV, embedded NATS data and the admin token" },
  port: { type: "int", help: "gateway port (8080)" },
  host: { type: "string", help: "gateway address (127.0.0.1)" },
  nats: { type: "string", help: "external NATS URL(s); without it, an embedded nats-server" },
  "nats-port": { type: "int", help: "embedded NATS port (4222)" },
  "nats-host": { type: "string", help: "embedded NATS address (127.0.0.1)" },
  "local-node": { type: "boolean", help: "run a node inside the manager (true)" },
  slots: { type: "int", help: "slots of the local node (CPU count)" },
  "lease-ms": { type: "int", help: "node lease (5000)" },
  "heartbeat-ms": { type: "int", help: "node heartbeat interval (1000)" },
  grace: { type: "duration", help: "on stop, how long the local node's instances may finish (30s)" },
  replicas: { type: "int", help: "JetStream replicas of buckets and streams (1; 3 on a NATS cluster)" },
  "max-package-size": { type: "size", help: "largest package (1GiB)" },
  "max-data-size": { type: "size", help: "largest data set version (256GiB)" },
  "max-data-files": { type: "int", help: "most files in a data set version (1000000)" },
  "cache-size": { type: "size", help: "the local node's cache of data sets and packages (10GiB)" },
  "tls-cert": { type: "string", help: "gateway TLS certificate (PEM)" },
  "tls-key": { type: "string", help: "gateway TLS key (PEM)" },
  "nats-tls-cert": { type: "string", help: "embedded NATS server's TLS certificate" },
  "nats-tls-key": { type: "string", help: "embedded NATS server's TLS key" },
  "max-body-bytes": { type: "int", help: "largest request body" },
  "rate-limit": { type: "int", help: "requests per second per token (100)" },
  "rate-burst": { type: "int", help: "burst of requests per token (4x the rate)" },
  "audit-retention-days": { type: "int", help: "how long audit entries are kept" },
  "header-timeout": { type: "duration", help: "time a client has from connecting to send its request head (10s)" },
  "idle-timeout": { type: "duration", help: "longest silence from a client while its request body comes (60s)" },
  "max-connections-per-client": { type: "int", help: "connections one address may hold open at once (64)" },
  "max-submitter-priority": { type: "int", help: "highest priority (0-100) submitters may give; admins any (100)" },
  "public-url": { type: "string", help: "the gateway's URL as users reach it, for links in task notifications" },
  "notify-secret-file": {
    type: "string",
    help: "file holding the key notifications are signed with (DIR/notify-secret)",
  },
  "notify-allow": { type: "list", help: "internal hosts, *.suffixes, addresses or CIDRs webhooks may reach (none)" },
  "notify-retry": { type: "duration", help: "wait before a notification's second try, tripled per try (15s)" },
  "notify-timeout": { type: "duration", help: "longest wait for a webhook's answer, per try (10s)" },
};

/** The node's settings. */
export const NODE_SETTINGS: Settings = {
  ...common,
  nats: { type: "string", help: "NATS URL(s) of the manager" },
  slots: { type: "int", help: "instances (of 1 cpu) at once (CPU count)" },
  name: { type: "string", help: "unique node name (<hostname>-<random>)" },
  "work-dir": { type: "string", help: "package cache and instance folders" },
  label: { type: "list", help: "placement labels, KEY=VALUE" },
  grace: { type: "duration", help: "on SIGTERM, how long running instances may finish (30s)" },
  "metrics-port": { type: "int", help: "serve node metrics on 127.0.0.1:PORT" },
  "cache-size": { type: "size", help: "data sets and packages kept, least recently used idle first out (10GiB)" },
  "join-token": { type: "string", help: "the manager's join token (prefer PARALLELIC_JOIN_TOKEN)", secret: true },
  "join-token-file": { type: "string", help: "file holding the join token" },
  "run-as": { type: "string", help: "run instances as this OS user (node started as root)" },
  "run-as-range": { type: "string", help: "a uid of its own per task from FIRST-LAST, e.g. 20000-29999 (root)" },
};

/** Where a value came from. */
export type Source = "flag" | "env" | "file" | "default";

/** A resolved configuration. */
export interface Resolved {
  values: Record<string, string | number | boolean | string[] | undefined>;
  sources: Record<string, Source>;
  /** Positional arguments. */
  rest: string[];
}

/** `PARALLELIC_DATA_DIR` for `data-dir`. */
export const envName = (key: string) => `PARALLELIC_${key.toUpperCase().replaceAll("-", "_")}`;

function convert(key: string, setting: Setting, raw: unknown, where: string) {
  const bad = (why: string): never => {
    throw new ValidationError(`${where}: '${key}' ${why}: got ${JSON.stringify(raw)}`, { code: "invalid_config" });
  };
  switch (setting.type) {
    case "string":
      return typeof raw === "string" ? raw : bad("must be text");
    case "int": {
      const n = typeof raw === "number" ? raw : Number(raw);
      return Number.isInteger(n) && n >= 0 ? n : bad("must be a whole number");
    }
    case "boolean":
      if (typeof raw === "boolean") return raw;
      if (["true", "1", "yes"].includes(String(raw))) return true;
      if (["false", "0", "no"].includes(String(raw))) return false;
      return bad("must be true or false");
    case "duration":
      try {
        return parseDurationMs(raw as string | number);
      } catch (e) {
        return bad((e as Error).message);
      }
    case "size":
      try {
        return parseBytes(typeof raw === "number" ? raw : String(raw));
      } catch (e) {
        return bad((e as Error).message);
      }
    case "list":
      if (Array.isArray(raw) && raw.every((v) => typeof v === "string")) return raw as string[];
      if (typeof raw === "string") return raw.split(",").map((s) => s.trim()).filter(Boolean);
      return bad("must be a list of text");
  }
}

/** Reads a config file's `[section]`; unknown sections and keys are errors that name them. */
export async function readConfigFile(path: string, section: string, settings: Settings) {
  // Loaded here, not at start: the client commands, which share this module's flags, never read a config file.
  const { parse, TomlError } = await import("smol-toml");
  let data: Record<string, unknown>;
  try {
    data = parse(await Deno.readTextFile(path));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) {
      throw new ValidationError(`Cannot read config file '${path}': it does not exist`, { code: "invalid_config" });
    }
    if (e instanceof TomlError) {
      throw new ValidationError(`${path} line ${e.line}: not valid TOML: ${e.message.split("\n")[0]}`, {
        code: "invalid_config",
      });
    }
    throw e;
  }
  for (const key of Object.keys(data)) {
    if (key !== "manager" && key !== "node") {
      throw new ValidationError(`${path}: unknown section '${key}' (use [manager] and [node])`, {
        code: "invalid_config",
      });
    }
  }
  const table = (data[section] ?? {}) as Record<string, unknown>;
  const out: Record<string, unknown> = {};
  for (const [key, raw] of Object.entries(table)) {
    const setting = settings[key];
    if (!setting || key === "config") {
      throw new ValidationError(
        `${path}: unknown key '${section}.${key}': known keys are ${Object.keys(settings).join(", ")}`,
        { code: "invalid_config" },
      );
    }
    out[key] = convert(key, setting, raw, path);
  }
  return out;
}

/**
 * Resolves settings from flags (`argv`), the environment and the file named
 * by `--config` (or PARALLELIC_CONFIG).
 *
 * @throws {ValidationError} Naming an unknown flag or key, or a bad value, and where it came from.
 */
export async function resolveConfig(
  argv: string[],
  section: "manager" | "node",
  settings: Settings,
  env: (name: string) => string | undefined = (n) => Deno.env.get(n),
): Promise<Resolved> {
  const spec: FlagSpec = { config: "string", help: "boolean" };
  for (const [key, s] of Object.entries(settings)) {
    spec[key] = s.type === "boolean" ? "boolean" : s.type === "list" ? "list" : "string";
  }
  const parsed = parseArgs(argv, spec, section);
  const configPath = (parsed.flags.config as string | undefined) ?? env("PARALLELIC_CONFIG");
  const file = configPath ? await readConfigFile(configPath, section, settings) : {};
  const values: Resolved["values"] = {};
  const sources: Resolved["sources"] = {};
  for (const [key, setting] of Object.entries(settings)) {
    const flag = parsed.flags[key];
    const fromEnv = env(envName(key));
    if (flag !== undefined) {
      values[key] = convert(key, setting, flag, `flag --${key}`);
      sources[key] = "flag";
    } else if (fromEnv !== undefined) {
      values[key] = convert(key, setting, fromEnv, `environment ${envName(key)}`);
      sources[key] = "env";
    } else if (key in file) {
      values[key] = file[key] as Resolved["values"][string];
      sources[key] = "file";
    } else {
      sources[key] = "default";
    }
  }
  return { values, sources, rest: parsed._ };
}

/** The effective configuration as text, secrets masked. */
export function showConfig(resolved: Resolved, settings: Settings): string {
  const rows = Object.entries(settings).map(([key, s]) => {
    const v = resolved.values[key];
    const shown = v === undefined ? "(default)" : s.secret ? "********" : Array.isArray(v) ? v.join(",") : String(v);
    return `${key.padEnd(14)} ${shown.padEnd(28)} ${resolved.sources[key].padEnd(7)} ${s.help}`;
  });
  return [`${"KEY".padEnd(14)} ${"VALUE".padEnd(28)} ${"SOURCE".padEnd(7)} MEANING`, ...rows].join("\n");
}
