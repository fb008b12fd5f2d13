/**
 * Every message Parallelic sends, every record it stores and every subject
 * it speaks on, declared once. Each schema is a zod schema with its type
 * beside it (`type X = z.infer<typeof X>`); each NATS subject sits next to
 * the schema of what travels on it. Parse at the edges, trust types inside.
 *
 * This module re-exports them from where each is declared:
 *
 * - `core/schema/ids.ts`: task ids, node, data set and user names, digests,
 *   data versions, roles, states and counts, matrix values, idempotency keys.
 * - `core/schema/task_spec.ts`: the checked task ({@linkcode TaskSpec}) and
 *   what a node needs to run it ({@linkcode RunSpec}).
 * - `core/schema/records.ts`: what Deno KV keeps (tasks, instances, spans,
 *   nodes, data sets, users, tokens, submit keys); the key map is `core/kv.ts`.
 * - `core/schema/messages.ts`: messages and the NATS subjects they travel on;
 *   who may use which subject is `core/subjects.ts`.
 * - `core/schema/stores.ts`: the log stream, the object-store buckets and how
 *   objects in them are named.
 * - `core/schema/views.ts`: what the HTTP API answers.
 *
 * @module
 */
export * from "./schema/ids.ts";
export * from "./schema/task_spec.ts";
export * from "./schema/records.ts";
export * from "./schema/messages.ts";
export * from "./schema/stores.ts";
export * from "./schema/views.ts";
