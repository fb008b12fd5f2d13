/**
 * Writes of the object service: a write is a session that stores an
 * instance's outputs piece by piece, checked against the attempt the node
 * holds at its start and still held at each piece.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import type { Bucket, ObjectSummary } from "../core/objects.ts";
import type { ObjectBucketName, ObjectWriteReply, ObjectWriteRequest } from "../core/subjects.ts";
import type { ObjectAccess } from "./object_access.ts";
import { summary } from "./object_reads.ts";

/** A write in progress. */
export interface WriteSession {
  node: string;
  key: string;
  writer: WritableStreamDefaultWriter<Uint8Array>;
  stored: Promise<ObjectSummary>;
  seenAt: number;
}

/** Gives up a write: nothing of it is stored. */
export function endWrite(writes: Map<string, WriteSession>, id: string, s: WriteSession, why: string): void {
  writes.delete(id);
  void s.writer.abort(new Error(why)).catch(() => {});
}

/** What the write handler needs. */
export interface WriteHandlerDeps {
  /** Writes in progress, by session. */
  writes: Map<string, WriteSession>;
  access: ObjectAccess;
  buckets: Record<ObjectBucketName, () => Promise<Bucket>>;
}

/** Answers a node's write requests: the pieces of a write, its abort, and deletes. */
export function writeHandler(deps: WriteHandlerDeps): (req: ObjectWriteRequest) => Promise<ObjectWriteReply> {
  const { writes, access } = deps;
  return async (req) => {
    const { node, bucket, object } = req;
    if (req.op === "delete") {
      access.mayWrite(node, bucket, object);
      return { ok: true, deleted: await (await deps.buckets[bucket]()).delete(object) };
    }
    if (req.op === "abort") {
      const open = writes.get(req.session);
      if (open && open.node === node && open.key === `${bucket}/${object}`) {
        endWrite(writes, req.session, open, "given up");
      }
      return { ok: true };
    }
    const attempt = Number(req.metadata?.attempt ?? NaN);
    let session = req.session;
    let s: WriteSession | undefined;
    if (session) {
      s = writes.get(session);
      if (!s || s.node !== node || s.key !== `${bucket}/${object}`) {
        throw new NotFoundError(`No write of '${object}' in progress under that session`, { code: "no_session" });
      }
    } else {
      if (!Number.isSafeInteger(attempt)) {
        throw new ValidationError(`Cannot store '${object}' without its attempt in the metadata`, {
          code: "attempt_missing",
        });
      }
      access.mayWrite(node, bucket, object, attempt);
      const pipe = new TransformStream<Uint8Array, Uint8Array>();
      const store = await deps.buckets[bucket]();
      session = crypto.randomUUID();
      s = {
        node,
        key: `${bucket}/${object}`,
        writer: pipe.writable.getWriter(),
        stored: store.put(object, pipe.readable, req.metadata).then(summary),
        seenAt: 0,
      };
      s.stored.catch(() => {});
      writes.set(session, s);
    }
    s.seenAt = Date.now();
    try {
      // Still held: an attempt fenced off meanwhile stores nothing more.
      access.mayWrite(node, bucket, object);
      const data = new Uint8Array(Buffer.from(req.data, "base64"));
      if (data.byteLength) await s.writer.write(data);
      if (!req.end) {
        await s.writer.ready;
        return { ok: true, session };
      }
      writes.delete(session);
      await s.writer.close();
      return { ok: true, session, info: await s.stored };
    } catch (e) {
      writes.delete(session);
      await s.writer.abort(e).catch(() => {});
      throw e;
    }
  };
}
