/**
 * What the data service's parts share: its dependencies, its limits, the
 * bucket, the locks, and the uploads in progress.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import type { Clock } from "../../core/clock.ts";
import { createKeyedLock, type KeyedLock } from "../../core/lock.ts";
import { retryJetStream } from "../../core/jetstream_retry.ts";
import type { Logger } from "../../core/log.ts";
import { type Bucket, openBucket } from "../../core/objects.ts";
import { DATA_BUCKET } from "../../core/schema.ts";

/** What the data service needs. */
export interface DataServiceDeps {
  nc: NatsConnection;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
}

/** Options of the data service (`createDataService` in `mod.ts`). */
export interface DataServiceOptions {
  /** Largest data set version accepted, in bytes of file content. @default {256 GiB} */
  maxDataSetBytes?: number;
  /**
   * Most files in one data set version: its manifest and the upload's
   * bookkeeping grow with them (and a tar of empty files costs nothing
   * against `maxDataSetBytes`). @default {1,000,000}
   */
  maxDataSetFiles?: number;
  /** JetStream replicas of the bucket. @default {1} */
  replicas?: number;
}

/** An upload in progress: what it stored so far, pinned against sweeps. */
export interface Upload {
  tmp: Set<string>;
  blobs: Set<string>;
}

/** The lock that serializes commits, deletes, sweeps and submits that pin data. */
export const CATALOG = "catalog";

/** The data service's shared state. */
export interface DataState {
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
  bucket: Bucket;
  locks: KeyedLock;
  uploads: Set<Upload>;
  maxDataSetBytes: number;
  maxDataSetFiles: number;
}

/** Opens (or creates) the data bucket and makes the shared state. */
export async function createState(deps: DataServiceDeps, options: DataServiceOptions): Promise<DataState> {
  // Retried while a NATS cluster is still forming (too few peers for a replicated bucket).
  const bucket: Bucket = await retryJetStream(
    () => openBucket(deps.nc, DATA_BUCKET, { create: true, replicas: options.replicas }),
    120_000,
  );
  return {
    kv: deps.kv,
    clock: deps.clock,
    log: deps.log.scope({ actor: "data" }),
    bucket,
    locks: createKeyedLock(),
    uploads: new Set(),
    maxDataSetBytes: options.maxDataSetBytes ?? 256 * 2 ** 30,
    maxDataSetFiles: options.maxDataSetFiles ?? 1_000_000,
  };
}
