/**
 * The subjects a node speaks on, in one table: each with the schema of its
 * message and reply, who sends on it and who serves it. A node's NATS
 * permissions are derived from this table (`core/nats_auth.ts`), so a subject
 * a node may use is declared once, here, with what travels on it.
 *
 * Nodes speak no JetStream: they reach the object store through the
 * manager's object service (`parallelic.node.<name>.objects.read|write`),
 * which checks every call against the node's current assignments. No
 * JetStream API call, and so no JetStream reply a node could aim at a
 * manager subject, is in a node's permissions. Log chunks go through the
 * manager too (`parallelic.node.<name>.logs`, see `actors/log_relay.ts`),
 * so a node publishes on no subject that JetStream answers.
 *
 * @module
 */
import { z } from "zod";
import {
  ErrorBody,
  nodeAssign,
  nodeDrain,
  nodeHeartbeat,
  nodeKill,
  nodeLeaving,
  nodeLeft,
  nodeRegister,
  nodeRejoin,
  type RequestSubject,
  type Subject,
  TaskId,
  taskResults,
} from "./schema.ts";

/** Buckets a node may ask the object service about, by short name. */
export const ObjectBucketName = z.enum(["packages", "data", "workspace"]);
/** A bucket a node may ask about. */
export type ObjectBucketName = z.infer<typeof ObjectBucketName>;

/** Most bytes of object content in one object-service message (base64 in JSON stays under a 1 MiB max_payload). */
export const OBJECT_PIECE_BYTES = 512 * 1024;

/** What the object service tells of a stored object. */
export const ObjectSummary = z.object({
  name: z.string(),
  size: z.number().int().nonnegative(),
  /** `SHA-256=<base64url>`, as the object store keeps it. */
  digest: z.string(),
  metadata: z.record(z.string(), z.string()).optional(),
});
/** A stored object, as the object service tells of it. */
export type ObjectSummary = z.infer<typeof ObjectSummary>;

const Piece = z.string().max(Math.ceil(OBJECT_PIECE_BYTES / 3) * 4, "a piece is at most 512 KiB");
const SessionId = z.string().regex(/^[0-9a-f-]{36}$/, "not a session id");
const ObjectName = z.string().min(1).max(1024);

/** Node → object service: info of an object, or the next piece of a read. */
export const ObjectReadRequest = z.discriminatedUnion("op", [
  z.object({ op: z.literal("info"), node: z.string(), bucket: ObjectBucketName, object: ObjectName }),
  /** Opens a read (no session) or goes on with one. */
  z.object({
    op: z.literal("read"),
    node: z.string(),
    bucket: ObjectBucketName,
    object: ObjectName,
    session: SessionId.optional(),
    /** Which piece (from 0; the opening request answers piece 0): a reader may ask a few ahead. */
    seq: z.number().int().nonnegative().optional(),
  }),
  /** Ends a read the node no longer wants (its reader was cancelled or failed): the manager frees it at once. */
  z.object({
    op: z.literal("close"),
    node: z.string(),
    bucket: ObjectBucketName,
    object: ObjectName,
    session: SessionId,
  }),
]);
/** An object read request. */
export type ObjectReadRequest = z.infer<typeof ObjectReadRequest>;
/** Reply to {@linkcode ObjectReadRequest}: the object's info (null: none) and, of a read, the next piece. */
export const ObjectReadReply = z.union([
  z.object({
    ok: z.literal(true),
    info: ObjectSummary.nullable(),
    session: SessionId.optional(),
    data: Piece.optional(),
    /** True with the last piece (and for an object of no bytes). */
    done: z.boolean().optional(),
  }),
  z.object({ ok: z.literal(false), error: ErrorBody }),
]);
/** Reply to an object read. */
export type ObjectReadReply = z.infer<typeof ObjectReadReply>;

/** Node → object service: store an object piece by piece, or delete one. */
export const ObjectWriteRequest = z.discriminatedUnion("op", [
  z.object({
    op: z.literal("put"),
    node: z.string(),
    bucket: ObjectBucketName,
    object: ObjectName,
    /** Absent on the first piece, which opens the write. */
    session: SessionId.optional(),
    metadata: z.record(z.string(), z.string()).optional(),
    data: Piece,
    /** True with the last piece: the answer then carries the stored object's info. */
    end: z.boolean(),
  }),
  z.object({ op: z.literal("delete"), node: z.string(), bucket: ObjectBucketName, object: ObjectName }),
  /** Gives up a write in progress (the node's source failed): nothing is stored. */
  z.object({
    op: z.literal("abort"),
    node: z.string(),
    bucket: ObjectBucketName,
    object: ObjectName,
    session: SessionId,
  }),
]);
/** An object write request. */
export type ObjectWriteRequest = z.infer<typeof ObjectWriteRequest>;
/** Reply to {@linkcode ObjectWriteRequest}. */
export const ObjectWriteReply = z.union([
  z.object({
    ok: z.literal(true),
    session: SessionId.optional(),
    info: ObjectSummary.nullable().optional(),
    deleted: z.boolean().optional(),
  }),
  z.object({ ok: z.literal(false), error: ErrorBody }),
]);
/** Reply to an object write. */
export type ObjectWriteReply = z.infer<typeof ObjectWriteReply>;

/** `parallelic.node.<name>.objects.<op>`: a request of node `name`, which `node` in the message must match. */
const objectsSubject = <Q extends z.ZodType, R extends z.ZodType>(op: string, schema: Q, reply: R) =>
(
  name: string,
): RequestSubject<Q, R> => ({ subject: `parallelic.node.${name}.objects.${op}`, schema, reply, sender: "node" });

/** `parallelic.node.<name>.objects.read` */
export const nodeObjectsRead = objectsSubject("read", ObjectReadRequest, ObjectReadReply);
/** Every node's object read subject; `node` must match the subject. */
export const nodeObjectsReadAll = nodeObjectsRead("*");
/** `parallelic.node.<name>.objects.write` */
export const nodeObjectsWrite = objectsSubject("write", ObjectWriteRequest, ObjectWriteReply);
/** Every node's object write subject; `node` must match the subject. */
export const nodeObjectsWriteAll = nodeObjectsWrite("*");

/** Most bytes of log output in one chunk (a node splits longer output). */
export const LOG_CHUNK_BYTES = 64 * 1024;
/** Most bytes of log output in one batch (base64 in JSON stays under a 1 MiB max_payload). */
export const LOG_BATCH_BYTES = 512 * 1024;

/** A piece of an instance's output, as a node relays it to the manager. */
export const LogChunk = z.object({
  taskId: TaskId,
  index: z.number().int().nonnegative(),
  attempt: z.number().int().nonnegative(),
  stream: z.enum(["stdout", "stderr"]),
  /** Which chunk of this attempt (from 0): with the attempt, it lets the stream drop one sent twice. */
  seq: z.number().int().nonnegative(),
  data: z.string().max(Math.ceil(LOG_CHUNK_BYTES / 3) * 4, "a log chunk is at most 64 KiB"),
});
/** A log chunk. */
export type LogChunk = z.infer<typeof LogChunk>;
/** Node → log relay: chunks, batched; the reply comes once every chunk is stored or dropped. */
export const LogBatch = z.object({ node: z.string(), chunks: z.array(LogChunk).max(4096) });
/** A log batch. */
export type LogBatch = z.infer<typeof LogBatch>;
/** Reply to {@linkcode LogBatch}: how many chunks were stored, how many dropped (not an instance the node holds). */
export const LogBatchReply = z.union([
  z.object({ ok: z.literal(true), stored: z.number().int(), dropped: z.number().int() }),
  z.object({ ok: z.literal(false), error: ErrorBody }),
]);
/** Reply to a log batch. */
export type LogBatchReply = z.infer<typeof LogBatchReply>;

/** `parallelic.node.<name>.logs`: log chunks of node `name`, which `node` in the message must match. */
export const nodeLogs = (name: string): RequestSubject<typeof LogBatch, typeof LogBatchReply> => ({
  subject: `parallelic.node.${name}.logs`,
  schema: LogBatch,
  reply: LogBatchReply,
  sender: "node",
});
/** Every node's log subject; `node` must match the subject. */
export const nodeLogsAll = nodeLogs("*");

/** One subject a node speaks on. */
export interface NodeSubject {
  /** The subject of node `name`. */
  subject(name: string): string;
  /** Schema of the message. */
  schema: z.ZodType;
  /** Schema of the reply, for a request. */
  reply: z.ZodType | null;
  /** Who sends on it. */
  sender: "node" | "manager";
  /** Who takes it: the manager's actors or the node (never JetStream). */
  server: "manager" | "node";
}

const entry = (
  make: (name: string) => Subject<z.ZodType> | RequestSubject<z.ZodType, z.ZodType>,
  sender: NodeSubject["sender"],
  server: NodeSubject["server"],
): NodeSubject => {
  const sample = make("x");
  return {
    subject: (name) => make(name).subject,
    schema: sample.schema,
    reply: "reply" in sample ? sample.reply : null,
    sender,
    server,
  };
};

/** Every subject a node speaks on. */
export const NODE_SUBJECTS: readonly NodeSubject[] = [
  entry(nodeRegister, "node", "manager"),
  entry(nodeHeartbeat, "node", "manager"),
  entry(taskResults, "node", "manager"),
  entry(nodeLeaving, "node", "manager"),
  entry(nodeLeft, "node", "manager"),
  entry(nodeObjectsRead, "node", "manager"),
  entry(nodeObjectsWrite, "node", "manager"),
  entry(nodeLogs, "node", "manager"),
  entry(nodeAssign, "manager", "node"),
  entry(nodeKill, "manager", "node"),
  entry(nodeRejoin, "manager", "node"),
  entry(nodeDrain, "manager", "node"),
];
