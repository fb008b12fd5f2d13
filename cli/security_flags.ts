/**
 * Security flags of `parallelic manager` and `parallelic node`: NATS
 * credentials and TLS, the join token, gateway TLS and limits. Secrets come
 * from files or the environment; a secret given as a flag is visible to
 * every local user in the process list, so only the join token has one
 * (as documented for quick starts).
 *
 * @module
 */
import { intValue } from "./args.ts";
import { usage } from "./client.ts";
import type { NatsCredentials, NatsTls } from "../core/nats_connect.ts";

/** Flags every NATS client (manager, node) takes. */
export const NATS_CLIENT_FLAGS = {
  "nats-user": "string",
  "nats-password-file": "string",
  "nats-seed-file": "string",
  "nats-ca": "string",
  "nats-cert": "string",
  "nats-key": "string",
} as const;

/** Flags only the manager takes. */
export const MANAGER_SECURITY_FLAGS = {
  "tls-cert": "string",
  "tls-key": "string",
  "nats-tls-cert": "string",
  "nats-tls-key": "string",
  "max-body-bytes": "string",
  "rate-limit": "string",
  "rate-burst": "string",
  "audit-retention-days": "string",
  "header-timeout": "string",
  "idle-timeout": "string",
  "max-connections-per-client": "string",
} as const;

/** Flags only the node takes. */
export const NODE_SECURITY_FLAGS = {
  "join-token": "string",
  "join-token-file": "string",
  "run-as": "string",
  "run-as-range": "string",
} as const;

/**
 * Flag values by name: a resolved configuration's `values` (manager, node),
 * or parsed flags (`parallelic doctor`).
 */
export type FlagValues = Readonly<Record<string, unknown>>;

const str = (p: FlagValues, name: string) => p[name] as string | undefined;
const int = intValue;
const env = (name: string) => Deno.env.get(name) || undefined;

async function readSecret(file: string, what: string): Promise<string> {
  try {
    return (await Deno.readTextFile(file)).trim();
  } catch (e) {
    return usage(`Cannot read ${what} from '${file}': ${(e as Error).message}`);
  }
}

/**
 * NATS credentials from `--nats-seed-file` (or `PARALLELIC_NATS_SEED`), or
 * `--nats-user` with `--nats-password-file` (or `PARALLELIC_NATS_PASSWORD`).
 */
export async function natsCredentials(p: FlagValues): Promise<NatsCredentials | undefined> {
  const seedFile = str(p, "nats-seed-file");
  const seed = seedFile ? await readSecret(seedFile, "the NATS seed") : env("PARALLELIC_NATS_SEED");
  if (seed) return { seed };
  const user = str(p, "nats-user") ?? env("PARALLELIC_NATS_USER");
  if (!user) return undefined;
  const passFile = str(p, "nats-password-file");
  const pass = passFile ? await readSecret(passFile, "the NATS password") : env("PARALLELIC_NATS_PASSWORD");
  if (!pass) usage(`--nats-user ${user} needs a password: --nats-password-file FILE or PARALLELIC_NATS_PASSWORD`);
  return { user, pass };
}

/** TLS towards NATS from `--nats-ca`, `--nats-cert`, `--nats-key`. */
export function natsTls(p: FlagValues): NatsTls | undefined {
  const tls = { caFile: str(p, "nats-ca"), certFile: str(p, "nats-cert"), keyFile: str(p, "nats-key") };
  if (!!tls.certFile !== !!tls.keyFile) usage("--nats-cert and --nats-key go together");
  return Object.values(tls).some(Boolean) ? tls : undefined;
}

/** A certificate and key pair from two flags (both or neither). */
export function certPair(p: FlagValues, cert: string, key: string): { certFile: string; keyFile: string } | undefined {
  const certFile = str(p, cert);
  const keyFile = str(p, key);
  if (!!certFile !== !!keyFile) usage(`--${cert} and --${key} go together`);
  return certFile && keyFile ? { certFile, keyFile } : undefined;
}

/** The join token: `--join-token-file`, `--join-token`, or `PARALLELIC_JOIN_TOKEN` (flags win, as everywhere). */
export async function joinToken(p: FlagValues): Promise<string | undefined> {
  const file = str(p, "join-token-file");
  if (file) return await readSecret(file, "the join token");
  return str(p, "join-token") ?? env("PARALLELIC_JOIN_TOKEN");
}

/** Gateway limits from `--max-body-bytes`, `--rate-limit`, `--rate-burst`. */
export function gatewayLimits(p: FlagValues): { maxBodyBytes?: number; rate?: { perSecond: number; burst: number } } {
  const perSecond = int(p, "rate-limit");
  const burst = int(p, "rate-burst");
  if (perSecond === 0) usage("--rate-limit must be at least 1 request per second");
  return {
    maxBodyBytes: int(p, "max-body-bytes"),
    rate: perSecond || burst
      ? { perSecond: perSecond ?? 100, burst: burst || Math.max(1, (perSecond ?? 100) * 4) }
      : undefined,
  };
}
