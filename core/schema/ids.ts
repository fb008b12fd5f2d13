/**
 * Names and small values every other schema is built from: task ids, node
 * names, digests, data set names and versions, user names, roles, states
 * and their counts, matrix values and idempotency keys.
 *
 * @module
 */
import { z } from "zod";

/** A task id: time-sortable, URL-safe (`t` + 10 base-36 time chars + 6 random). */
export const TaskId = z.string().regex(/^t[0-9a-z]{16}$/, "not a task id");
/** A task id. */
export type TaskId = z.infer<typeof TaskId>;

/**
 * A node name: what `--name` gives, or `<hostname>-<random>`. It is one NATS
 * subject token (`parallelic.node.<name>.assign`), so it has no `.`: NATS
 * permissions bind each node to the subjects that carry its name.
 */
export const NodeName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$/,
  "a node name is 1-63 letters, digits, '_' or '-'",
);
/** A node name. */
export type NodeName = z.infer<typeof NodeName>;

/** A package digest: `sha256-` and 64 hex digits. */
export const Digest = z.string().regex(/^sha256-[0-9a-f]{64}$/, "not a sha256 digest");
/** A package digest. */
export type Digest = z.infer<typeof Digest>;

/** A data set name. */
export const DataSetName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/,
  "a data set name is 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit",
);
/** A data set name. */
export type DataSetName = z.infer<typeof DataSetName>;

/** A data set version: `sha256:` and the 64 hex digits of its canonical manifest's SHA-256. */
export const DataVersion = z.string().regex(/^sha256:[0-9a-f]{64}$/, "not a data set version (sha256:<64 hex>)");
/** A data set version. */
export type DataVersion = z.infer<typeof DataVersion>;

/** The states a task or an instance can be in. */
export const State = z.enum(["queued", "running", "succeeded", "failed", "cancelled"]);
/** A task or instance state. */
export type State = z.infer<typeof State>;

/** The states in which nothing more will happen. */
export const FINAL_STATES: ReadonlySet<State> = new Set(["succeeded", "failed", "cancelled"]);

/** How many instances are in each state. */
export const Counts = z.object({
  queued: z.number().int().nonnegative(),
  running: z.number().int().nonnegative(),
  succeeded: z.number().int().nonnegative(),
  failed: z.number().int().nonnegative(),
  cancelled: z.number().int().nonnegative(),
});
/** How many instances are in each state. */
export type Counts = z.infer<typeof Counts>;

/** A matrix parameter value. */
export const ParamValue = z.union([z.string(), z.number(), z.boolean()]);
/** A matrix parameter value. */
export type ParamValue = z.infer<typeof ParamValue>;

/** Roles, most powerful first (gateway/auth.ts checks them). */
export const Role = z.enum(["admin", "submitter", "viewer"]);
/** A role. */
export type Role = z.infer<typeof Role>;

/** A user name: 1-64 letters, digits, `.`, `_`, `-`, `@`. */
export const UserName = z.string().regex(
  /^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$/,
  "a user name is 1-64 letters, digits, '.', '_', '@' or '-'",
);

/** A client's key for a submit it may send again: 1-200 printable ASCII characters. */
export const IdempotencyKey = z.string().regex(/^[\x21-\x7e]{1,200}$/, "1-200 printable ASCII characters, no spaces");
