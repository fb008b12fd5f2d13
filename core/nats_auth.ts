/**
 * Who may do what on the bus: the NATS users of a Parallelic installation
 * and their publish/subscribe permissions, rendered as nats-server
 * configuration (`authorization { users = [...] }`, which nats-server 2.9
 * reloads on SIGHUP).
 *
 * Three kinds of user, and no anonymous access:
 * - the **manager**: everything (`>`);
 * - the **join** user, whose nkey seed is the join token: it may only ask
 *   `parallelic.join` to let a node's own key in;
 * - one user per **node**, its own nkey: it publishes only on subjects that
 *   carry its name (register, heartbeat, results, object reads and writes,
 *   its log chunks), reads only the subjects the manager sends it and its
 *   own inbox, and calls no JetStream API (see `core/subjects.ts`).
 *
 * nats-server 2.9 expands permission templates (`{{name()}}`) only for JWT
 * users, not for users of a configuration file, so each node gets its own
 * entry, added when it joins.
 *
 * @module
 */
import { createUser, fromPublic, fromSeed } from "@nats-io/nkeys";
import { ValidationError } from "./errors.ts";
import type { NatsCredentials } from "./nats_connect.ts";
import { nodeJoin } from "./schema.ts";
import { NODE_SUBJECTS } from "./subjects.ts";

/** Subjects a user may publish to and subscribe to. */
export interface Permissions {
  publish: string[];
  subscribe: string[];
}

/** One user of the generated configuration: an nkey, or a name and password (external servers). */
export type NatsUser =
  & { permissions: Permissions; comment?: string }
  & ({ nkey: string } | { user: string; password: string });

/** The inbox prefix of a node's connection: replies to it go only there. */
export const nodeInboxPrefix = (name: string) => `_INBOX_${name}`;
/** The inbox prefix of the join connection. */
export const JOIN_INBOX_PREFIX = nodeJoin.inbox!;

/** The manager may do everything. */
export function managerPermissions(): Permissions {
  return { publish: [">"], subscribe: [">"] };
}

/** The join user may only ask to let a node in, and read the answer. */
export function joinPermissions(): Permissions {
  return { publish: [nodeJoin.subject], subscribe: [`${JOIN_INBOX_PREFIX}.>`] };
}

/**
 * A node publishes only on the subjects of {@linkcode NODE_SUBJECTS} that it
 * sends on, each carrying its name, and reads only those the manager sends
 * it and its own inbox. No JetStream API or object-store subject is among
 * them: a node reaches objects through the manager's object service.
 */
export function nodePermissions(name: string): Permissions {
  return {
    publish: NODE_SUBJECTS.filter((s) => s.senders.includes("node")).map((s) => s.ofNode(name)),
    subscribe: [
      ...NODE_SUBJECTS.filter((s) => s.servers.includes("node")).map((s) => s.ofNode(name)),
      `${nodeInboxPrefix(name)}.>`,
    ],
  };
}

const quote = (s: string) => JSON.stringify(s);

/** Renders `authorization { users = [...] }` for nats-server. */
export function renderAuthorization(users: NatsUser[]): string {
  const list = (xs: string[], indent: string) =>
    xs.length <= 2
      ? `[${xs.map(quote).join(", ")}]`
      : `[\n${xs.map((x) => `${indent}  ${quote(x)}`).join("\n")}\n${indent}]`;
  const entries = users.map((u) => {
    const who = "nkey" in u ? `nkey: ${quote(u.nkey)}` : `user: ${quote(u.user)}, password: ${quote(u.password)}`;
    return [
      ...(u.comment ? [`    # ${u.comment}`] : []),
      `    {`,
      `      ${who}`,
      `      permissions: {`,
      `        publish: { allow: ${list(u.permissions.publish, "        ")} }`,
      `        subscribe: { allow: ${list(u.permissions.subscribe, "        ")} }`,
      `      }`,
      `    }`,
    ].join("\n");
  });
  return `authorization {\n  users = [\n${entries.join("\n")}\n  ]\n}\n`;
}

/** A fresh nkey user: its seed (the secret) and public key. */
export function newNkeyUser(): { seed: string; publicKey: string } {
  const kp = createUser();
  return { seed: new TextDecoder().decode(kp.getSeed()), publicKey: kp.getPublicKey() };
}

/**
 * The public key of a user seed.
 *
 * @throws {ValidationError} When `seed` is not an nkey user seed.
 */
export function publicKeyOf(seed: string): string {
  try {
    const key = fromSeed(new TextEncoder().encode(seed.trim())).getPublicKey();
    if (!key.startsWith("U")) throw new Error("not a user seed");
    return key;
  } catch (e) {
    throw new ValidationError(
      `Cannot use the NATS seed as it is not an nkey user seed ('SU…'): ${(e as Error).message}`,
      {
        cause: e,
        code: "invalid_seed",
      },
    );
  }
}

/** Whether `key` is a valid public user nkey. */
export function isUserPublicKey(key: string): boolean {
  try {
    return fromPublic(key).getPublicKey().startsWith("U");
  } catch {
    return false;
  }
}

/**
 * The `authorization` block of an external nats-server for a manager and one
 * node `gpu-1`, with user names and passwords (set your own):
 * docs/operations.md shows it, and a test keeps the two the same.
 */
export function externalNatsExample(): string {
  return renderAuthorization([
    { user: "manager", password: "CHANGE-ME-manager", permissions: managerPermissions(), comment: "the manager" },
    { user: "node-gpu-1", password: "CHANGE-ME-gpu-1", permissions: nodePermissions("gpu-1"), comment: "node gpu-1" },
  ]);
}

/** The users of the embedded NATS server (kept by manager/nats_users.ts, changed through the gateway). */
export interface NatsUsers {
  /** The manager's credentials (full permissions). */
  readonly manager: NatsCredentials;
  /** The join token (an nkey seed) that lets nodes ask to join. */
  joinToken(): string;
  /** Replaces the join token; nodes that joined keep their own keys. */
  rotateJoinToken(): Promise<string>;
  /** Credentials for a node that runs inside the manager (not persisted; no join needed). */
  inProcessNode(name: string): Promise<NatsCredentials>;
  /** The public key `name` joined with, if any. */
  boundKey(name: string): Promise<string | null>;
  /** Whether `name` is reserved for a node inside the manager. */
  isReserved(name: string): boolean;
  /** Lets `nkey` in as node `name` (replacing an older key) once the server reloaded. */
  bindNode(name: string, nkey: string, hostname: string): Promise<void>;
  /** Removes the key of node `name`; true when there was one. */
  forgetNode(name: string): Promise<boolean>;
  /** The `authorization` block for nats-server, as things stand. */
  authorization(): Promise<string>;
}
