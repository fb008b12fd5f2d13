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
  /** With `waitOnFirstConnect`: give up (throwing the last error) after this long. @default {forever} */
  giveUpAfterMs?: number;
  /**
   * With `waitOnFirstConnect`: told why a connect failed and when the next
   * try comes, at once and then at most every 5 s, so that a wait is never
   * silent.
   */
  onRetry?: (error: Error, retryInMs: number) => void;
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
    // No stack captured per request (a node makes one per results batch): the bus names the subject on failure.
    noAsyncTraces: true,
    // Also bounds each reconnect's handshake (nats.js waits 20 s by default).
    timeout: 5000,
  };
}

/** Whether `e` says that the server refused the credentials. */
export function isAuthError(e: unknown): boolean {
  return (e as Error)?.name === "AuthorizationError" || /Authorization Violation/i.test(String((e as Error)?.message));
}

/**
 * Connects to NATS. With `waitOnFirstConnect`, a server that is not up yet
 * (refused, reset, or silent: a handshake caught by a configuration reload
 * can stall) is tried again with a growing pause until it answers; refused
 * credentials end the wait at once.
 *
 * @throws The nats.js error (an `AuthorizationError` for refused credentials).
 */
export async function connectNats(options: ConnectNatsOptions): Promise<NatsConnection> {
  guardSocketResets();
  const opts = natsConnectionOptions({ ...options, waitOnFirstConnect: false });
  let pauseMs = 100;
  // A handshake takes milliseconds; one that nats-server dropped during a reload never ends, so
  // attempts are timed out, starting short and doubling for links where a handshake is slow.
  let patienceMs = 2000;
  const giveUpAt = Date.now() + (options.giveUpAfterMs ?? Infinity);
  let toldAt = -Infinity;
  for (;;) {
    const attempt = connect(opts);
    let timer: ReturnType<typeof setTimeout> | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        reject(new Error(`no answer within ${patienceMs} ms`));
      }, patienceMs);
    });
    try {
      return await Promise.race([attempt, timeout]);
    } catch (e) {
      // A late success of an attempt given up on is closed, never leaked.
      attempt.then((nc) => nc.close(), () => {});
      if (!options.waitOnFirstConnect || isAuthError(e) || Date.now() + pauseMs > giveUpAt) throw e;
      if (timedOut) patienceMs = Math.min(patienceMs * 2, 30_000);
      if (Date.now() - toldAt >= 5000) {
        toldAt = Date.now();
        options.onRetry?.(e as Error, pauseMs);
      }
    } finally {
      clearTimeout(timer);
    }
    await new Promise((r) => setTimeout(r, pauseMs));
    pauseMs = Math.min(pauseMs * 2, 2000);
  }
}

let guarded = false;
/**
 * When nats-server refuses credentials, or drops a connection that is still
 * shaking hands while it reloads its configuration, it closes the socket;
 * the node transport of nats.js can then hit that closed socket after it
 * stopped listening (a late `ECONNRESET` on read, or a write after end) and
 * raise it as an uncaught error that would end the process. The caller
 * learns what happened from the connect attempt itself (an error, or no
 * answer); these two late socket errors are noise, swallowed here and only
 * they.
 */
function guardSocketResets(): void {
  if (guarded) return;
  guarded = true;
  globalThis.addEventListener("error", (event) => {
    const e = event.error as { code?: string; syscall?: string } | undefined;
    if ((e?.code === "ECONNRESET" && e.syscall === "read") || e?.code === "ERR_STREAM_WRITE_AFTER_END") {
      event.preventDefault();
    }
  });
}
