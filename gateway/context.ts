/**
 * What the gateway's route modules share: the Hono environment (the caller,
 * once authenticated) and the dependencies `createGateway` hands each of
 * them. Route modules import this, never `gateway/app.ts`, so that the app
 * imports its routes and nothing imports the app back.
 *
 * @module
 */
import type { DataService } from "../services/data/mod.ts";
import type { WorkspaceService } from "../services/workspace.ts";
import type { AuditLog } from "../core/audit.ts";
import type { Bus } from "../core/bus.ts";
import type { Logger } from "../core/log.ts";
import type { Metrics } from "../core/metrics.ts";
import type { NatsUsers } from "../core/nats_auth.ts";
import type { PackageLimits } from "../core/package.ts";
import type { TokenRecord } from "../core/schema.ts";
import type { TokenCache } from "./auth.ts";
import type { GatewayStats } from "./stats.ts";

/** The gateway's Hono environment: the caller, once authenticated. */
export type GatewayEnv = { Variables: { who: TokenRecord } };

/** What the gateway needs. */
export interface GatewayDeps {
  bus: Bus;
  kv: Deno.Kv;
  workspace: WorkspaceService;
  data: DataService;
  log: Logger;
  /** The manager's metrics registry, served at `GET /metrics`. @default {a private registry} */
  metrics?: Metrics;
  /** The audit log. @default {one over `kv`} */
  audit?: AuditLog;
  /** The embedded NATS server's users, for the join token (null or absent with an external server). */
  users?: NatsUsers | null;
}

/** What `createGateway` gives each route module: its deps with every default filled in, and its options. */
export interface RouteDeps {
  bus: Bus;
  kv: Deno.Kv;
  workspace: WorkspaceService;
  data: DataService;
  /** Scoped to the gateway. */
  log: Logger;
  metrics: Metrics;
  audit: AuditLog;
  /** The embedded NATS server's users (null with an external server: no join token). */
  users: NatsUsers | null;
  /** The guard's token cache: cleared when users or tokens change; a stream ends when its token is revoked. */
  tokens: TokenCache;
  /** Counters of what the gateway refused. */
  stats: GatewayStats;
  /** Package limits. */
  limits: PackageLimits;
  /** Ends the live event streams. */
  signal?: AbortSignal;
  /** Where uploaded packages are spooled while checked and stored. @default {the system's temporary folder} */
  spoolDir?: string;
  /** Highest priority a submitter may give, at submit and later (`--max-submitter-priority`); none when absent. */
  maxSubmitterPriority?: number;
  /** Task notifications' settings (null: none, as in a gateway without a notify service). */
  notify: NotifySettings | null;
}

/** Task notifications' settings, as admins are shown them (`GET /api/v1/notify`). */
export interface NotifySettings {
  /** The key webhook notifications are signed with. */
  secret: string;
  /** `--notify-allow`: internal hosts, addresses and CIDRs webhooks may reach. */
  allow: string[];
  /** `--public-url`: notifications link to task pages under it. */
  publicUrl: string | null;
}
