/**
 * Every subject Parallelic speaks on, in one table ({@linkcode SUBJECTS}):
 * each with the schema of its message and reply, who sends on it and who
 * serves it. A node's NATS permissions are derived from this table
 * (`core/nats_auth.ts`), so a subject a node may use is declared once, here,
 * with what travels on it. The subjects themselves (and the functions that
 * name a node's or a task's) are declared beside their schemas in
 * `core/schema/messages.ts`, the object-service and log-relay ones here.
 * The workspace and data services speak no subject of their own: they use
 * JetStream's object stores and the log stream (`core/schema/stores.ts`);
 * the notify service tells of each webhook try on `taskNotifiedAll`.
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
  logSubjectsAll,
  nodeAssign,
  nodeDrain,
  nodeHeartbeat,
  nodeJoin,
  nodeKill,
  nodeLeaving,
  nodeLeft,
  nodeRegister,
  nodeRejoin,
  nodesDrain,
  nodesEvent,
  nodesList,
  nodesUsage,
  type RequestSubject,
  type Subject,
  taskCancel,
  taskDoneAll,
  taskExplain,
  TaskId,
  taskNotifiedAll,
  taskProgressAll,
  taskRerun,
  taskResults,
  taskSubmit,
  taskUpdate,
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

/**
 * Who sends or takes the messages of a subject: a node, or a part of the
 * manager (`tools`: benchmarks and tests, with the manager's credentials).
 */
export type Party =
  | "node"
  | "gateway"
  | "task actor"
  | "node actor"
  | "join actor"
  | "object service"
  | "log relay"
  | "notify service"
  | "JetStream"
  | "tools";

/** One subject: what travels on it, who sends it, who takes it. */
export interface SubjectEntry {
  /** The subject as its takers subscribe to it: `*` where a node name or a task id goes. */
  pattern: string;
  /** A node's own subject: the subject of node `name` (its NATS permissions list it). Null for the others. */
  ofNode: ((name: string) => string) | null;
  /** Schema of the message; null for raw bytes (log output, as JetStream keeps it). */
  schema: z.ZodType | null;
  /** Schema of the reply, for a request; null for an event. */
  reply: z.ZodType | null;
  /** Who sends on it. */
  senders: readonly Party[];
  /** Who takes it: serves the request, or listens to the event. */
  servers: readonly Party[];
}

type AnySubject = Subject<z.ZodType> | RequestSubject<z.ZodType, z.ZodType>;

/** An entry of a subject that carries no node name. */
const fixed = (s: AnySubject, senders: readonly Party[], servers: readonly Party[]): SubjectEntry => ({
  pattern: s.subject,
  ofNode: null,
  schema: s.schema,
  reply: "reply" in s ? s.reply : null,
  senders,
  servers,
});

/** An entry of a node's own subject, made for each node name by `make`. */
const ofNode = (
  make: (name: string) => AnySubject,
  senders: readonly Party[],
  servers: readonly Party[],
): SubjectEntry => ({ ...fixed(make("*"), senders, servers), ofNode: (name) => make(name).subject });

/**
 * Every subject Parallelic speaks on. A node's NATS permissions are derived
 * from the entries with `ofNode` (`core/nats_auth.ts`); the join token's
 * from {@linkcode nodeJoin}'s; every other subject is the manager's own
 * (only its user reaches them).
 */
export const SUBJECTS: readonly SubjectEntry[] = [
  // A node's own subjects.
  ofNode(nodeRegister, ["node"], ["node actor"]),
  ofNode(nodeHeartbeat, ["node"], ["node actor", "task actor", "gateway"]),
  ofNode(taskResults, ["node"], ["task actor"]),
  ofNode(nodeLeaving, ["node"], ["node actor"]),
  ofNode(nodeLeft, ["node"], ["node actor"]),
  ofNode(nodeObjectsRead, ["node"], ["object service"]),
  ofNode(nodeObjectsWrite, ["node"], ["object service"]),
  ofNode(nodeLogs, ["node"], ["log relay"]),
  ofNode(nodeAssign, ["task actor"], ["node"]),
  ofNode(nodeKill, ["task actor"], ["node"]),
  ofNode(nodeRejoin, ["node actor"], ["node"]),
  ofNode(nodeDrain, ["node actor"], ["node"]),
  // The one subject of the join token.
  fixed(nodeJoin, ["node"], ["join actor"]),
  // Inside the manager.
  fixed(taskSubmit, ["gateway", "tools"], ["task actor"]),
  fixed(taskCancel, ["gateway"], ["task actor"]),
  fixed(taskRerun, ["gateway"], ["task actor"]),
  fixed(taskUpdate, ["gateway"], ["task actor"]),
  fixed(taskExplain, ["gateway"], ["task actor"]),
  fixed(taskDoneAll, ["task actor"], ["notify service", "tools"]),
  fixed(taskProgressAll, ["task actor"], ["gateway", "tools"]),
  fixed(taskNotifiedAll, ["notify service"], ["gateway"]),
  fixed(nodesEvent, ["node actor", "tools"], ["task actor", "gateway"]),
  fixed(nodesList, ["task actor", "join actor", "gateway"], ["node actor"]),
  fixed(nodesDrain, ["gateway"], ["node actor"]),
  fixed(nodesUsage, ["gateway"], ["node actor"]),
  // Log output, as the LOGS stream keeps it (`parallelic.log.<task>.<index>.<node>`): the gateway reads it there.
  { pattern: logSubjectsAll, ofNode: null, schema: null, reply: null, senders: ["log relay"], servers: ["JetStream"] },
];

/** A node's own subjects (those with `ofNode`), from which its NATS permissions are derived. */
export const NODE_SUBJECTS: readonly (SubjectEntry & { ofNode: (name: string) => string })[] = SUBJECTS.filter(
  (s): s is SubjectEntry & { ofNode: (name: string) => string } => s.ofNode !== null,
);
