/**
 * Reads of the object service: a read is a session that hands an object to
 * its node in pieces of at most {@linkcode OBJECT_PIECE_BYTES}, in order,
 * holding a share of the read budget for what it fetched ahead.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { type BudgetShare, type ByteBudget, shareOf } from "../core/byte_budget.ts";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import type { Bucket, ObjectSummary } from "../core/objects.ts";
import {
  OBJECT_PIECE_BYTES,
  type ObjectBucketName,
  type ObjectReadReply,
  type ObjectReadRequest,
} from "../core/subjects.ts";
import type { ObjectAccess } from "./object_access.ts";

/** A read in progress. */
export interface ReadSession {
  node: string;
  key: string;
  reader: ReadableStreamDefaultReader<Uint8Array>;
  rest: Uint8Array;
  info: ObjectSummary;
  seenAt: number;
  /** The piece the next request must ask for. */
  seq: number;
  /** Bytes sent so far. */
  sent: number;
  /** Requests answered in the order they came (a reader asks a few pieces ahead). */
  turn: Promise<unknown>;
  /** Its part of the read budget. */
  share: BudgetShare;
}

/** What a stored object's summary tells a node. */
export const summary = (i: ObjectSummary): ObjectSummary => ({
  name: i.name,
  size: i.size,
  digest: i.digest,
  metadata: i.metadata ?? {},
});

/** Frees a read: its chunks fetched ahead and its part of the budget. */
export function endRead(reads: Map<string, ReadSession>, id: string, s: ReadSession): void {
  reads.delete(id);
  s.share.close();
  void s.reader.cancel().catch(() => {});
}

/** The next piece of a read, base64, and whether it is the last. */
export async function nextPiece(s: ReadSession): Promise<{ data: string; done: boolean }> {
  const parts: Uint8Array[] = [];
  let size = 0;
  let done = false;
  while (size < OBJECT_PIECE_BYTES) {
    let chunk = s.rest;
    s.rest = new Uint8Array(0);
    if (!chunk.byteLength) {
      const next = await s.reader.read();
      if (next.done) {
        done = true;
        break;
      }
      chunk = next.value;
    }
    const take = chunk.subarray(0, OBJECT_PIECE_BYTES - size);
    s.rest = chunk.subarray(take.byteLength);
    parts.push(take);
    size += take.byteLength;
  }
  s.sent += size;
  // Passed on: what the session holds ahead of its node shrinks.
  s.share.give(size);
  // The last piece says so even when the object ends on a piece boundary: readers count on ceil(size / piece).
  if (!done && s.sent >= s.info.size) {
    done = true;
    void s.reader.cancel().catch(() => {});
  }
  if (done) s.share.close();
  return { data: Buffer.concat(parts).toString("base64"), done };
}

/** What the read handler needs. */
export interface ReadHandlerDeps {
  /** Reads in progress, by session. */
  reads: Map<string, ReadSession>;
  readBudget: ByteBudget;
  access: ObjectAccess;
  buckets: Record<ObjectBucketName, () => Promise<Bucket>>;
}

/** Answers a node's read requests: info, the pieces of a read, and its close. */
export function readHandler(deps: ReadHandlerDeps): (req: ObjectReadRequest) => Promise<ObjectReadReply> {
  const { reads, readBudget, access } = deps;
  return async (req) => {
    const { node, bucket, object } = req;
    if (req.op === "close") {
      // Allowed after the node lost the instance too: closing frees, it reads nothing.
      const open = reads.get(req.session);
      if (open && open.node === node && open.key === `${bucket}/${object}`) endRead(reads, req.session, open);
      return { ok: true, info: null };
    }
    await access.mayRead(node, bucket, object);
    const store = await deps.buckets[bucket]();
    if (req.op === "info") {
      const info = await store.info(object);
      return { ok: true, info: info && summary(info) };
    }
    const key = `${bucket}/${object}`;
    let s: ReadSession | undefined;
    if (req.session) {
      s = reads.get(req.session);
      if (!s || s.node !== node || s.key !== key) {
        throw new NotFoundError(`No read of '${object}' in progress under that session`, { code: "no_session" });
      }
    } else {
      const share = shareOf(readBudget);
      const read = await store.read(object, { budget: share });
      if (!read) return { ok: true, info: null };
      const session = crypto.randomUUID();
      s = {
        node,
        key,
        reader: read.body.getReader(),
        rest: new Uint8Array(0),
        info: summary(read.info),
        seenAt: 0,
        seq: 0,
        sent: 0,
        turn: Promise.resolve(),
        share,
      };
      reads.set(session, s);
      req = { ...req, session, seq: 0 };
    }
    const session = req.session!;
    const seq = req.seq ?? s.seq;
    const it = s;
    const answer = s.turn.then(async () => {
      if (seq !== it.seq) {
        throw new ValidationError(`Read of '${object}' asked for piece ${seq}, expected ${it.seq}`, {
          code: "piece_out_of_order",
        });
      }
      it.seq++;
      it.seenAt = Date.now();
      try {
        const { data, done } = await nextPiece(it);
        if (done) reads.delete(session);
        return { ok: true as const, info: it.info, session, data, done };
      } catch (e) {
        endRead(reads, session, it);
        throw e;
      }
    });
    s.turn = answer.catch(() => {});
    return await answer;
  };
}
