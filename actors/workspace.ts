/**
 * The workspace actor: owns what lives in JetStream. It creates the package
 * bucket (packages stored once per SHA-256 digest) and the log stream, and
 * stores and reads packages for the gateway and nodes.
 *
 * @module
 */
import { jetstreamManager, RetentionPolicy, StorageType } from "@nats-io/jetstream";
import { type ObjectStore, Objm } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { retryJetStream } from "../core/jetstream_retry.ts";
import type { Logger } from "../core/log.ts";
import { type Digest, LOG_STREAM, PACKAGE_BUCKET } from "../core/schema.ts";

/** What the workspace actor needs. */
export interface WorkspaceActorDeps {
  nc: NatsConnection;
  log: Logger;
}

/** Options of {@linkcode createWorkspaceActor}. */
export interface WorkspaceActorOptions {
  /** JetStream replicas for buckets and streams (3 on a NATS cluster). @default {1} */
  replicas?: number;
  /** Most bytes of logs kept; the oldest go first. @default {8 GiB} */
  maxLogBytes?: number;
}

/** The workspace actor. */
export interface WorkspaceActor {
  /** Stores a package under its digest; returns false when it was already there. */
  putPackage(digest: Digest, bytes: Uint8Array): Promise<boolean>;
  /** Reads a package, or null when it is not stored. */
  getPackage(digest: Digest): Promise<Uint8Array | null>;
  /** Bytes held by the package bucket. */
  packageBytes(): Promise<number>;
}

/** Ensures the buckets and streams Parallelic uses exist; returns the package bucket. */
export async function ensureStorage(
  nc: NatsConnection,
  options: WorkspaceActorOptions = {},
  log?: Logger,
): Promise<ObjectStore> {
  const replicas = options.replicas ?? 1;
  // A NATS cluster that just started may not have elected its JetStream leader yet: wait for it.
  const jsm = await retryJetStream(
    () => jetstreamManager(nc, { timeout: 3000 }),
    120_000,
    (e) => log?.warn("workspace:waiting-for-jetstream", { error: e.message }),
  );
  const config = {
    name: LOG_STREAM,
    subjects: ["parallelic.log.>"],
    storage: StorageType.File,
    retention: RetentionPolicy.Limits,
    max_bytes: options.maxLogBytes ?? 8 * 2 ** 30,
    num_replicas: replicas,
    // Logs are read with direct gets, which any replica answers.
    allow_direct: true,
  };
  try {
    await jsm.streams.info(LOG_STREAM);
    await jsm.streams.update(LOG_STREAM, { max_bytes: config.max_bytes, allow_direct: true });
  } catch {
    await jsm.streams.add(config);
  }
  return await new Objm(nc).create(PACKAGE_BUCKET, { replicas, storage: StorageType.File });
}

/** Creates the workspace actor (creating its buckets and streams). */
export async function createWorkspaceActor(
  deps: WorkspaceActorDeps,
  options: WorkspaceActorOptions = {},
): Promise<WorkspaceActor> {
  const log = deps.log.scope({ actor: "workspace" });
  const packages = await ensureStorage(deps.nc, options, log);
  // Digests known to be stored (packages are never deleted): a resubmitted package needs no lookup.
  const stored = new Set<string>();
  const remember = (digest: string) => {
    if (stored.size >= 10_000) stored.clear();
    stored.add(digest);
  };
  return {
    async putPackage(digest, bytes) {
      if (stored.has(digest)) return false;
      const info = await packages.info(digest);
      if (info && !info.deleted && info.size === bytes.byteLength) {
        remember(digest);
        return false;
      }
      await packages.putBlob({ name: digest }, bytes);
      remember(digest);
      log.info("workspace:package-stored", { digest, bytes: bytes.byteLength });
      return true;
    },
    getPackage: (digest) => packages.getBlob(digest),
    async packageBytes() {
      return (await packages.status()).size;
    },
  };
}
