/**
 * Connecting to NATS the way every Parallelic process does: with its own
 * credentials (an nkey seed, or a user and password for an external
 * server), TLS when asked, and its own inbox prefix.
 *
 * @module
 */
import { connect, type ConnectionOptions, type NatsConnection, nkeyAuthenticator } from "@nats-io/transport-node";

/** Who connects: an nkey seed (`SU…`), or a user and password. */
export type NatsCredentials = { seed: string } | { user: string; pass: string };

/** TLS towards the NATS server (PEM files). */
export interface NatsTls {
  /** CA that signed the server's certificate (else the system's roots). */
  caFile?: string;
  /** Client certificate, for servers that verify clients. */
  certFile?: string;
  /** Client key, with `certFile`. */
  keyFile?: string;
}

/** Options of {@linkcode connectNats}. */
export interface ConnectNatsOptions {
  /** Server URL(s), comma-separated. */
  servers: string;
  /** Connection name, shown by the server. */
  name: string;
  /** Credentials; without them the connection is anonymous (refused by a Parallelic server). */
  credentials?: NatsCredentials;
  /** TLS settings; set when the server requires TLS. */
  tls?: NatsTls;
  /** Prefix of reply inboxes (a node may read only its own). */
  inboxPrefix?: string;
  /** Keep reconnecting forever (long-running processes). @default {true} */
  reconnect?: boolean;
  /** Keep trying the first connect while the server is not up. @default {false} */
  waitOnFirstConnect?: boolean;
}

/** Connection options for nats.js from {@linkcode ConnectNatsOptions}. */
export function natsConnectionOptions(options: ConnectNatsOptions): ConnectionOptions {
  const c = options.credentials;
  const tls = options.tls && Object.values(options.tls).some(Boolean) ? options.tls : undefined;
  return {
    servers: options.servers.split(","),
    name: options.name,
    ...(c && "seed" in c ? { authenticator: nkeyAuthenticator(new TextEncoder().encode(c.seed)) } : {}),
    ...(c && "user" in c ? { user: c.user, pass: c.pass } : {}),
    ...(tls ? { tls } : {}),
    ...(options.inboxPrefix ? { inboxPrefix: options.inboxPrefix } : {}),
    ...(options.reconnect ?? true
      ? { maxReconnectAttempts: -1, reconnectTimeWait: 250 }
      : { reconnect: false, maxReconnectAttempts: 0 }),
    waitOnFirstConnect: options.waitOnFirstConnect ?? false,
  };
}

/** Whether `e` says that the server refused the credentials. */
export function isAuthError(e: unknown): boolean {
  return (e as Error)?.name === "AuthorizationError" || /Authorization Violation/i.test(String((e as Error)?.message));
}

/**
 * Connects to NATS. With `waitOnFirstConnect`, a server that is not up yet
 * (refused, reset, or silent for 10 s) is tried again with a growing pause
 * until it answers; refused credentials end the wait at once.
 *
 * @throws The nats.js error (an `AuthorizationError` for refused credentials).
 */
export async function connectNats(options: ConnectNatsOptions): Promise<NatsConnection> {
  guardSocketResets();
  const opts = natsConnectionOptions({ ...options, waitOnFirstConnect: false });
  let pauseMs = 100;
  for (;;) {
    const attempt = connect(opts);
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error("no answer within 10 s")), 10_000);
    });
    try {
      return await Promise.race([attempt, timeout]);
    } catch (e) {
      // A late success of an attempt given up on is closed, never leaked.
      attempt.then((nc) => nc.close(), () => {});
      if (!options.waitOnFirstConnect || isAuthError(e)) throw e;
    } finally {
      clearTimeout(timer);
    }
    await new Promise((r) => setTimeout(r, pauseMs));
    pauseMs = Math.min(pauseMs * 2, 2000);
  }
}

let guarded = false;
/**
 * When nats-server refuses credentials it closes the socket, and the node
 * transport of nats.js can then report a late `ECONNRESET` after it stopped
 * listening, as an uncaught error that would end the process. The refusal
 * itself reaches the caller as an `AuthorizationError`; the late reset is
 * noise, so it is swallowed here (and only it).
 */
function guardSocketResets(): void {
  if (guarded) return;
  guarded = true;
  globalThis.addEventListener("error", (event) => {
    const e = event.error as { code?: string; syscall?: string } | undefined;
    if (e?.code === "ECONNRESET" && e.syscall === "read") event.preventDefault();
  });
}
