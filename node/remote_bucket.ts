/**
 * A node's view of an object-store bucket, through the manager's object
 * service (`actors/object_service.ts`) on its own subjects: nodes call no
 * JetStream API. Content travels in pieces, one request in flight per
 * stream, so neither side holds a whole object; a read checks the object's
 * SHA-256 digest at the end, as a direct read of the store does.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { type Bus, unwrap } from "../core/bus.ts";
import { UnavailableError } from "../core/errors.ts";
import { digestHex, type ObjectAccess, type ObjectSummary } from "../core/objects.ts";
import { nodeObjectsRead, nodeObjectsWrite, OBJECT_PIECE_BYTES, type ObjectBucketName } from "../core/subjects.ts";

/** One request's wait; a manager that died mid-request costs no more. */
const TIMEOUT_MS = 10_000;
/** Pieces of a read asked for at once. */
const PIECES_AHEAD = 4;
/** How long a first request is tried again while the manager is away (a restart). */
const RETRY_MS = 60_000;

/** Errors that say the manager is away (down, or stopping as it answered), not that the request was wrong. */
const AWAY = new Set(["no_responder", "stopping"]);

/** Calls `fn` again, backing off, while the manager cannot be reached (not when it answered with an error). */
async function whileAway<T>(fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + RETRY_MS;
  for (let delayMs = 100;; delayMs = Math.min(delayMs * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      if (!AWAY.has((e as { code?: string }).code ?? "") || Date.now() + delayMs > deadline) throw e;
      await new Promise((r) => setTimeout(r, delayMs));
    }
  }
}

const toBase64 = (bytes: Uint8Array) =>
  Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString("base64");
const fromBase64 = (text: string) => new Uint8Array(Buffer.from(text, "base64"));

/** The bucket `bucket` as node `node` may reach it through the manager. */
export function remoteBucket(bus: Bus, node: string, bucket: ObjectBucketName): ObjectAccess {
  const readSubject = nodeObjectsRead(node);
  const writeSubject = nodeObjectsWrite(node);
  const ask = async (object: string, session?: string, seq?: number) =>
    unwrap(
      await bus.request(readSubject, { op: "read", node, bucket, object, session, seq }, { timeoutMs: TIMEOUT_MS }),
    );

  return {
    name: bucket,
    async info(object) {
      const reply = await whileAway(async () =>
        unwrap(await bus.request(readSubject, { op: "info", node, bucket, object }, { timeoutMs: TIMEOUT_MS }))
      );
      return reply.info;
    },
    async read(object) {
      // A read is started again while the manager is away; one cut off midway fails (its digest could not hold).
      const first = await whileAway(() => ask(object));
      if (!first.info) return null;
      const info: ObjectSummary = first.info;
      const hash = createHash("sha256");
      let bytes = 0;
      // Pieces asked for ahead of the reader, in order: the round trips overlap, memory stays a few pieces.
      const pieces = Math.max(1, Math.ceil(info.size / OBJECT_PIECE_BYTES));
      const ahead: Promise<typeof first>[] = [Promise.resolve(first)];
      let asked = 1;
      let ended = pieces <= 1 && first.done === true;
      // A reader that gives up (cancelled, or a piece failed) ends the read on the manager at once.
      const close = () => {
        if (ended || !first.session) return;
        ended = true;
        bus.request(readSubject, { op: "close", node, bucket, object, session: first.session }, {
          timeoutMs: TIMEOUT_MS,
        }).catch(() => {}); // The manager drops it after a minute anyway.
      };
      const corrupt = (why: string) =>
        new UnavailableError(`Cannot read object '${object}' of bucket '${bucket}' as ${why}`, {
          code: "object_corrupt",
        });
      return {
        info,
        body: new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              while (asked < pieces && ahead.length < PIECES_AHEAD) {
                const pending = ask(object, first.session, asked++);
                pending.catch(() => {}); // Seen when its turn comes.
                ahead.push(pending);
              }
              const next = ahead.shift();
              if (!next) throw corrupt(`it ended early: ${bytes} of ${info.size} bytes`);
              const reply = await next;
              const data = fromBase64(reply.data ?? "");
              hash.update(data);
              bytes += data.byteLength;
              if (data.byteLength) controller.enqueue(data);
              if (!reply.done) return;
              ended = true;
              const hex = hash.digest("hex");
              if (bytes !== info.size || hex !== digestHex(info)) {
                throw corrupt(`it is corrupt: ${bytes} of ${info.size} bytes, digest ${hex}`);
              }
              controller.close();
            } catch (e) {
              close();
              controller.error(e);
            }
          },
          cancel: close,
        }),
      };
    },
    async put(object, body, metadata) {
      const reader = body.getReader();
      let session: string | undefined;
      try {
        return await putPieces();
      } catch (e) {
        // A source that failed midway: the manager drops the write at once, stores nothing.
        if (session) {
          bus.request(writeSubject, { op: "abort", node, bucket, object, session }, { timeoutMs: TIMEOUT_MS })
            .catch(() => {});
        }
        throw e;
      }
      async function putPieces() {
        let pending: Uint8Array = new Uint8Array(0);
        let ended = false;
        for (;;) {
          const parts = [pending];
          let size = pending.byteLength;
          while (!ended && size < OBJECT_PIECE_BYTES) {
            const { value, done } = await reader.read();
            if (done) ended = true;
            else parts.push(value), size += value.byteLength;
          }
          const all = parts.length === 1 ? parts[0] : Buffer.concat(parts);
          const piece = all.subarray(0, OBJECT_PIECE_BYTES);
          pending = all.subarray(piece.byteLength);
          const end = ended && pending.byteLength === 0;
          const send = async () =>
            unwrap(
              await bus.request(writeSubject, {
                op: "put",
                node,
                bucket,
                object,
                session,
                metadata: session ? undefined : metadata,
                data: toBase64(piece),
                end,
              }, { timeoutMs: TIMEOUT_MS }),
            );
          // The first piece is sent again while the manager is away (nothing is stored yet); later ones are not.
          const reply = session ? await send() : await whileAway(send);
          session = reply.session;
          if (end) {
            if (!reply.info) {
              throw new UnavailableError(`Storing object '${object}' of bucket '${bucket}' was not confirmed`);
            }
            return reply.info;
          }
        }
      }
    },
    async delete(object) {
      const reply = await whileAway(async () =>
        unwrap(await bus.request(writeSubject, { op: "delete", node, bucket, object }, { timeoutMs: TIMEOUT_MS }))
      );
      return reply.deleted ?? false;
    },
  };
}
