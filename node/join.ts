/**
 * How a node gets onto the bus. It has its own nkey (`WORK_DIR/node.nkey`,
 * mode 0600, made at first start) and connects with it. When NATS does not
 * know that key yet, the node connects once more with the join token, asks
 * the manager on `parallelic.join` to let its key in, and reconnects with its
 * own key. Against an external NATS server it uses the credentials it was
 * given instead.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { hostname } from "node:os";
import { join } from "node:path";
import { createBus, unwrap } from "../core/bus.ts";
import { AuthError, ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { JOIN_INBOX_PREFIX, newNkeyUser, nodeInboxPrefix, publicKeyOf } from "../core/nats_auth.ts";
import { connectNats, isAuthError, type NatsCredentials, type NatsTls } from "../core/nats_connect.ts";
import { nodeJoin } from "../core/schema.ts";

/** Options of {@linkcode connectNode}. */
export interface ConnectNodeOptions {
  /** NATS server URL(s), comma-separated. */
  natsUrl: string;
  /** The node's name. */
  name: string;
  /** The node's work dir, where its key is kept. */
  workDir: string;
  /** The join token (`parallelic nodes token`), needed until the node's key is known. */
  joinToken?: string;
  /** Fixed credentials (an external NATS server); then no key and no join. */
  credentials?: NatsCredentials;
  /** TLS towards NATS. */
  tls?: NatsTls;
  /** The version the node reports. */
  version: string;
  log: Logger;
}

/**
 * Checks the join token's form before it is used: a token cut short or
 * mistyped would otherwise fail deep in the NATS handshake, again and again.
 *
 * @throws {ValidationError} Saying what is wrong with it.
 */
export function checkJoinToken(token: string): void {
  const t = token.trim();
  const what = t.length === 0
    ? "it is empty"
    : !t.startsWith("SU")
    ? `it starts '${t.slice(0, 2)}' instead of 'SU'`
    : t.length !== 58
    ? `it is ${t.length} characters long instead of 58 (cut short or run together?)`
    : /[^A-Z2-7]/.test(t)
    ? "it holds characters other than A-Z and 2-7"
    : null;
  let bad = what;
  if (!bad) {
    try {
      publicKeyOf(t);
    } catch {
      bad = "its checksum does not match (a character is wrong)";
    }
  }
  if (bad) {
    throw new ValidationError(
      `The join token is malformed: ${bad}. Use the whole token that 'parallelic nodes token' prints on the manager ` +
        `(the manager's data dir holds it in the file join-token)`,
      { code: "join_token_malformed" },
    );
  }
}

/** Reads the node's nkey seed, making one (mode 0600) at first start. */
export async function nodeSeed(workDir: string): Promise<string> {
  const file = join(workDir, "node.nkey");
  try {
    const seed = (await Deno.readTextFile(file)).trim();
    publicKeyOf(seed);
    return seed;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
  }
  await Deno.mkdir(workDir, { recursive: true });
  const { seed } = newNkeyUser();
  await Deno.writeTextFile(file, seed + "\n", { mode: 0o600, createNew: true });
  return seed;
}

/**
 * Connects a node to NATS with its own identity, joining first when needed.
 *
 * @throws {AuthError} When NATS refuses the join token, or the node's key is
 *   unknown and no join token was given.
 * @throws {ConflictError} When a live node of the same name joined with another key.
 */
export async function connectNode(options: ConnectNodeOptions): Promise<NatsConnection> {
  const { name, log } = options;
  // A manager may still be starting: the node keeps trying, and says so.
  const unreachable = (e: Error, retryInMs: number) =>
    log.warn("node:nats-unreachable", {
      url: options.natsUrl,
      error: e.message,
      retryInMs,
      hint: "is the manager running, and is --nats its NATS address (nats://HOST:4222)?",
    });
  // An empty one (PARALLELIC_JOIN_TOKEN="") is none: said below when the node's key turns out to be unknown.
  if (options.joinToken?.trim()) checkJoinToken(options.joinToken);
  const connectAs = (credentials: NatsCredentials) =>
    connectNats({
      servers: options.natsUrl,
      name: `parallelic-node-${name}`,
      credentials,
      tls: options.tls,
      inboxPrefix: nodeInboxPrefix(name),
      waitOnFirstConnect: true,
      onRetry: unreachable,
    });
  if (options.credentials) return await connectAs(options.credentials);
  const seed = await nodeSeed(options.workDir);
  try {
    return await connectAs({ seed });
  } catch (e) {
    if (!isAuthError(e)) throw e;
  }
  if (!options.joinToken) {
    throw new AuthError(
      `Node '${name}' is not known to this manager's NATS server yet: start it with the join token ` +
        `(--join-token-file FILE or PARALLELIC_JOIN_TOKEN; 'parallelic nodes token' prints it)`,
      { code: "join_token_missing" },
    );
  }
  log.info("node:joining", { name });
  let jc: NatsConnection;
  try {
    jc = await connectNats({
      servers: options.natsUrl,
      name: `parallelic-join-${name}`,
      credentials: { seed: options.joinToken.trim() },
      tls: options.tls,
      inboxPrefix: JOIN_INBOX_PREFIX,
      reconnect: false,
      waitOnFirstConnect: true,
      onRetry: unreachable,
    });
  } catch (e) {
    if (!isAuthError(e)) throw e;
    throw new AuthError(
      `Cannot join as node '${name}': NATS refused the join token (${(e as Error).message}). ` +
        `Check it with 'parallelic nodes token' on the manager`,
      { cause: e, code: "join_refused" },
    );
  }
  try {
    unwrap(
      await createBus(jc, log).request(nodeJoin, {
        name,
        nkey: publicKeyOf(seed),
        hostname: hostname().slice(0, 255),
        version: options.version,
      }, { timeoutMs: 15_000 }),
    );
  } finally {
    await jc.close().catch(() => {});
  }
  log.info("node:joined", { name });
  // The key is live; a connection that races another node's join (a reload) may still be refused once or twice.
  for (let attempt = 1;; attempt++) {
    try {
      return await connectAs({ seed });
    } catch (e) {
      if (!isAuthError(e) || attempt >= 5) throw e;
      await new Promise((r) => setTimeout(r, 100 * attempt));
    }
  }
}
