/**
 * A JetStream object-store bucket with bounded-memory streaming both ways.
 *
 * Writes go through the object store's own `put(meta, ReadableStream)`
 * (1 MiB chunks, one in flight). Reads do not use its `get()`, which pushes
 * every chunk as fast as the server sends them whatever the reader's pace:
 * {@linkcode Bucket.read} pulls a few chunks at a time through an ordered
 * consumer, a batch ahead of its reader and no more, and checks the SHA-256 digest
 * at the end. SHA-256 runs natively (node:crypto) for the whole process.
 *
 * @module
 */
import { jetstream, type JetStreamManager, jetstreamManager, StorageType } from "@nats-io/jetstream";
import { type ObjectInfo, type ObjectStore, Objm, setSha256Backend } from "@nats-io/obj";
import type { NatsConnection } from "@nats-io/transport-node";
import { createHash } from "node:crypto";
import type { ByteBudget } from "./byte_budget.ts";
import { UnavailableError } from "./errors.ts";

setSha256Backend("native");

/** Chunk size of stored objects (the server's max_payload caps it). */
export const CHUNK_BYTES = 1024 * 1024;
/** Chunks a reader asks for at once; at most twice this many are held in memory. */
const READ_BATCH = 8;

/** A stored object's content, as a stream. */
export interface ObjectRead {
  info: ObjectInfo;
  /** The content; errors when the digest does not match or chunks are missing. */
  body: ReadableStream<Uint8Array>;
}

/** What a stored object's reader needs to know of it. */
export type ObjectSummary = Pick<ObjectInfo, "name" | "size" | "digest"> & { metadata?: Record<string, string> };

/**
 * The part of a bucket that nodes use: an object's info, its content, a put
 * and a delete. The manager's buckets have it, and so has the node's view of
 * them through the manager's object service (`node/remote_bucket.ts`).
 */
export interface ObjectAccess {
  /** The bucket name. */
  readonly name: string;
  /** Stores `body` under `name` (replacing what was there), with string metadata. */
  put(name: string, body: ReadableStream<Uint8Array>, metadata?: Record<string, string>): Promise<ObjectSummary>;
  /** Info of a live object, or null. */
  info(name: string): Promise<ObjectSummary | null>;
  /** Streams an object's content, or null when there is none. */
  read(name: string): Promise<{ info: ObjectSummary; body: ReadableStream<Uint8Array> } | null>;
  /** Deletes an object; false when there was none. */
  delete(name: string): Promise<boolean>;
}

/** An object-store bucket. */
export interface Bucket {
  /** The bucket name. */
  readonly name: string;
  /** The underlying object store. */
  readonly store: ObjectStore;
  /** Stores `body` under `name` (replacing what was there), with string metadata. */
  put(name: string, body: ReadableStream<Uint8Array>, metadata?: Record<string, string>): Promise<ObjectInfo>;
  /** Info of a live object, or null. */
  info(name: string): Promise<ObjectInfo | null>;
  /**
   * Streams an object's content, or null when there is none. With `budget`,
   * each chunk is taken from it before it is fetched; the reader gives the
   * bytes back once passed on.
   */
  read(name: string, options?: { budget?: Pick<ByteBudget, "take" | "give"> }): Promise<ObjectRead | null>;
  /** Deletes an object (its chunks are purged); false when there was none. */
  delete(name: string): Promise<boolean>;
  /** Renames an object without copying its chunks; false when `to` already exists. */
  rename(from: string, to: string): Promise<boolean>;
  /** Every live object. */
  list(): Promise<ObjectInfo[]>;
  /** Bytes the bucket's stream holds. */
  bytes(): Promise<number>;
}

/** Options of {@linkcode openBucket}. */
export interface OpenBucketOptions {
  /** Create the bucket when missing. @default {false} */
  create?: boolean;
  /** Replicas when creating. @default {1} */
  replicas?: number;
}

/** Hex of an object's SHA-256 (its `digest` is `SHA-256=<base64url>`). */
export function digestHex(info: Pick<ObjectInfo, "digest">): string {
  const b64 = info.digest.replace(/^SHA-256=/i, "").replaceAll("-", "+").replaceAll("_", "/");
  const raw = atob(b64.padEnd(Math.ceil(b64.length / 4) * 4, "="));
  return Array.from(raw, (c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
}

/** Opens (or creates) bucket `name`. */
export async function openBucket(nc: NatsConnection, name: string, options: OpenBucketOptions = {}): Promise<Bucket> {
  const objm = new Objm(nc);
  const store = options.create
    ? await objm.create(name, { replicas: options.replicas ?? 1, storage: StorageType.File })
    : await objm.open(name);
  const jsm: JetStreamManager = await jetstreamManager(nc, { checkAPI: false });
  const js = jetstream(nc);
  const stream = `OBJ_${name}`;
  const live = async (object: string) => {
    const info = await store.info(object);
    return info && !info.deleted ? info : null;
  };

  const read = async (
    object: string,
    options: { budget?: Pick<ByteBudget, "take" | "give"> } = {},
  ): Promise<ObjectRead | null> => {
    const info = await live(object);
    if (!info) return null;
    const budget = options.budget;
    const subject = `$O.${name}.C.${info.nuid}`;
    const hash = createHash("sha256");
    let received = 0;
    let bytes = 0;
    const finish = (controller: ReadableStreamDefaultController<Uint8Array>) => {
      const hex = hash.digest("hex");
      if (bytes !== info.size || hex !== digestHex(info)) {
        controller.error(
          new UnavailableError(
            `Cannot read object '${object}' of bucket '${name}' as it is corrupt: ${bytes} of ${info.size} bytes, digest ${hex}`,
            { code: "object_corrupt" },
          ),
        );
      } else controller.close();
    };
    if (info.chunks <= 1) {
      // One chunk (or none): a single direct read, no consumer.
      if (budget && info.size > 0) await budget.take(info.size, info.size);
      const m = info.chunks === 0 ? null : await jsm.streams.getMessage(stream, { last_by_subj: subject });
      const data = m?.data ?? new Uint8Array(0);
      return {
        info,
        body: new ReadableStream({
          start(controller) {
            hash.update(data);
            bytes = data.byteLength;
            if (data.byteLength) controller.enqueue(data);
            finish(controller);
          },
        }),
      };
    }
    const consumer = await js.consumers.get(stream, { filter_subjects: subject });
    const done = async () => void await consumer.delete().catch(() => false);
    let idle = 0;
    return {
      info,
      body: new ReadableStream<Uint8Array>({
        async pull(controller) {
          try {
            let want = Math.min(READ_BATCH, info.chunks - received);
            // Under a shared budget, as many chunks as it grants now (at least one, once one is free).
            if (budget) {
              const granted = await budget.take(CHUNK_BYTES, want * CHUNK_BYTES);
              want = Math.max(1, Math.floor(granted / CHUNK_BYTES));
              budget.give(granted - want * CHUNK_BYTES);
            }
            const batch = await consumer.fetch({ max_messages: want });
            let got = 0;
            for await (const m of batch) {
              got++;
              received++;
              bytes += m.data.byteLength;
              hash.update(m.data);
              controller.enqueue(m.data);
            }
            idle = got === 0 ? idle + 1 : 0;
            if (received >= info.chunks) {
              await done();
              finish(controller);
            } else if (idle >= 3) {
              throw new UnavailableError(
                `Cannot read object '${object}' of bucket '${name}' as chunks stopped coming: ${received} of ${info.chunks}`,
                { code: "object_truncated" },
              );
            }
          } catch (e) {
            await done();
            controller.error(e);
          }
        },
        cancel: done,
        // One batch queued while the next is fetched: at most two batches in memory.
      }, new ByteLengthQueuingStrategy({ highWaterMark: READ_BATCH * CHUNK_BYTES })),
    };
  };

  return {
    name,
    store,
    put: (object, body, metadata) =>
      store.put({ name: object, metadata, options: { max_chunk_size: CHUNK_BYTES } }, body, { timeout: 30_000 }),
    info: live,
    read,
    async delete(object) {
      if (!(await live(object))) return false;
      await store.delete(object);
      return true;
    },
    async rename(from, to) {
      const info = await live(from);
      if (!info) throw new UnavailableError(`Cannot rename object '${from}' of bucket '${name}' as it is gone`);
      if (await live(to)) return false;
      await store.update(from, { name: to, metadata: info.metadata, options: info.options });
      return true;
    },
    list: () => store.list(),
    async bytes() {
      return (await store.status()).size;
    },
  };
}
