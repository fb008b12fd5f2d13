/**
 * The gateway's front door: the TCP (or TLS) listener clients connect to.
 * Deno.serve has no header, idle or per-client connection limits (a client
 * that connects and sends nothing, or a header line a second, holds a
 * connection for ever), so the front door accepts connections itself and:
 *
 * - bounds the connections open per client address (`maxConnectionsPerClient`;
 *   one more is answered 429 and closed);
 * - gives a client `headerTimeoutMs` from connecting (TLS handshake included)
 *   to send a complete request head of at most `maxHeaderBytes` (else 408 or 431);
 * - while the request body comes, closes a connection silent for `idleTimeoutMs`
 *   (a body sent a byte a minute); once the answer has started, an event stream
 *   or log follow may stay quiet as long as it likes;
 * - passes the request on to the gateway's Deno.serve over a Unix socket that
 *   only this process can reach, with the client's address in
 *   {@linkcode PEER_HEADER} (a client's own copy is removed) and
 *   `connection: close`, so every request gets these checks (each connection
 *   carries one request).
 *
 * @module
 */

/** The header that carries the client's address from the front door to the gateway. */
export const PEER_HEADER = "x-parallelic-peer";

/** Options of {@linkcode startFrontDoor}. */
export interface FrontDoorOptions {
  hostname: string;
  port: number;
  /** PEM certificate and key: the front door terminates TLS. */
  tls?: { cert: string; key: string };
  /** The Unix socket the gateway's Deno.serve listens on. */
  upstreamPath: string;
  /** From connecting to the end of the request head. @default {10000} */
  headerTimeoutMs?: number;
  /** Longest silence from a client while its request body comes. @default {60000} */
  idleTimeoutMs?: number;
  /** Connections open at once from one address. @default {64} */
  maxConnectionsPerClient?: number;
  /** Largest request head. @default {65536} */
  maxHeaderBytes?: number;
}

/** A running front door. */
export interface FrontDoor {
  readonly addr: Deno.NetAddr;
  /** Connections open now, by client address. */
  readonly open: ReadonlyMap<string, number>;
  /** Stops accepting and closes every connection. */
  close(): Promise<void>;
}

const encoder = new TextEncoder();

/** A short answer the front door gives itself, then closes. */
function refusal(status: number, reason: string, code: string, message: string): Uint8Array {
  const body = JSON.stringify({ error: { code, message } });
  return encoder.encode(
    `HTTP/1.1 ${status} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${
      encoder.encode(body).byteLength
    }\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** Where `\r\n\r\n` starts in `bytes` (searching from `from`), or -1. */
function headEnd(bytes: Uint8Array, from: number): number {
  for (let i = Math.max(0, from); i + 4 <= bytes.byteLength; i++) {
    if (bytes[i] === 13 && bytes[i + 1] === 10 && bytes[i + 2] === 13 && bytes[i + 3] === 10) return i;
  }
  return -1;
}

/** The request head with the client's peer and connection headers replaced by the front door's. */
function rewriteHead(head: string, peer: string): string {
  const lines = head.split("\r\n");
  const kept = lines.filter((line, i) => i === 0 || !/^(x-parallelic-peer|connection|keep-alive)\s*:/i.test(line));
  return `${kept.join("\r\n")}\r\n${PEER_HEADER}: ${peer}\r\nconnection: close\r\n\r\n`;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.byteLength;) at += await conn.write(bytes.subarray(at));
}

function closeQuietly(c: Deno.Conn): void {
  try {
    c.close();
  } catch { /* already closed */ }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Starts the front door. */
export function startFrontDoor(options: FrontDoorOptions): FrontDoor {
  const headerTimeoutMs = options.headerTimeoutMs ?? 10_000;
  const idleTimeoutMs = options.idleTimeoutMs ?? 60_000;
  const maxPerClient = options.maxConnectionsPerClient ?? 64;
  const maxHeaderBytes = options.maxHeaderBytes ?? 65_536;
  const listener: Deno.Listener = options.tls
    ? Deno.listenTls({
      hostname: options.hostname,
      port: options.port,
      cert: options.tls.cert,
      key: options.tls.key,
      alpnProtocols: ["http/1.1"],
    })
    : Deno.listen({ hostname: options.hostname, port: options.port });
  const open = new Map<string, number>();
  const conns = new Set<Deno.Conn>();

  async function handle(client: Deno.Conn) {
    const peer = (client.remoteAddr as Deno.NetAddr).hostname;
    open.set(peer, (open.get(peer) ?? 0) + 1);
    let upstream: Deno.Conn | null = null;
    let timer: ReturnType<typeof setTimeout> | undefined;
    // A client that does not read its refusal (or never finishes a TLS handshake) gets a second to, then is closed.
    const refuse = async (bytes: Uint8Array) => {
      await Promise.race([writeAll(client, bytes).catch(() => {}), sleep(1000)]);
      closeQuietly(client);
    };
    try {
      if (open.get(peer)! > maxPerClient) {
        return await refuse(refusal(
          429,
          "Too Many Requests",
          "too_many_connections",
          `Too many connections from ${peer}: at most ${maxPerClient} at once`,
        ));
      }
      // The request head, against one deadline from the connection's start.
      const late = new Promise<"late">((r) => timer = setTimeout(() => r("late"), headerTimeoutMs));
      let buf = new Uint8Array(0);
      let end = -1;
      const chunk = new Uint8Array(16_384);
      while (end < 0) {
        const n = await Promise.race([client.read(chunk).catch(() => null), late]);
        if (n === "late") {
          return await refuse(refusal(
            408,
            "Request Timeout",
            "header_timeout",
            `The request head did not come within ${headerTimeoutMs} ms of connecting`,
          ));
        }
        if (n === null) return closeQuietly(client);
        const next = new Uint8Array(buf.byteLength + n);
        next.set(buf);
        next.set(chunk.subarray(0, n), buf.byteLength);
        const from = buf.byteLength - 3;
        buf = next;
        end = headEnd(buf, from);
        if (end < 0 && buf.byteLength > maxHeaderBytes) {
          return await refuse(refusal(
            431,
            "Request Header Fields Too Large",
            "header_too_large",
            `Request head over ${maxHeaderBytes} bytes`,
          ));
        }
      }
      clearTimeout(timer);
      const head = new TextDecoder().decode(buf.subarray(0, end));
      upstream = await Deno.connect({ transport: "unix", path: options.upstreamPath });
      conns.add(upstream);
      await writeAll(upstream, encoder.encode(rewriteHead(head, peer)));
      if (buf.byteLength > end + 4) await writeAll(upstream, buf.subarray(end + 4));
      await pipeBoth(client, upstream, idleTimeoutMs);
    } catch {
      /* a connection reset: nothing to answer */
    } finally {
      clearTimeout(timer);
      closeQuietly(client);
      if (upstream) closeQuietly(upstream), conns.delete(upstream);
      conns.delete(client);
      const left = (open.get(peer) ?? 1) - 1;
      if (left > 0) open.set(peer, left);
      else open.delete(peer);
    }
  }

  const accepting = (async () => {
    for (;;) {
      let conn: Deno.Conn;
      try {
        conn = await listener.accept();
      } catch {
        return; // closed
      }
      conns.add(conn);
      handle(conn);
    }
  })();

  return {
    addr: listener.addr as Deno.NetAddr,
    open,
    async close() {
      try {
        listener.close();
      } catch { /* already closed */ }
      await accepting;
      for (const c of conns) closeQuietly(c);
    },
  };
}

/**
 * Copies client → upstream and upstream → client until either side ends.
 * Until the upstream's first byte, a client silent for `idleMs` is cut off.
 */
async function pipeBoth(client: Deno.Conn, upstream: Deno.Conn, idleMs: number): Promise<void> {
  let answering = false;
  let idle: ReturnType<typeof setTimeout> | undefined;
  // Either side ending ends both: the answer was sent (the gateway closes after one), or the client went away
  // (and the gateway's stream for it is cancelled).
  const done = () => {
    clearTimeout(idle);
    closeQuietly(client);
    closeQuietly(upstream);
  };
  const arm = () => {
    clearTimeout(idle);
    if (!answering) idle = setTimeout(done, idleMs);
  };
  const up = (async () => {
    const buf = new Uint8Array(65_536);
    arm();
    for (;;) {
      const n = await client.read(buf);
      if (n === null) break;
      arm();
      await writeAll(upstream, buf.subarray(0, n));
    }
  })().catch(() => {}).finally(done);
  const down = (async () => {
    const buf = new Uint8Array(65_536);
    for (;;) {
      const n = await upstream.read(buf);
      if (n === null) break;
      if (!answering) answering = true, clearTimeout(idle);
      await writeAll(client, buf.subarray(0, n));
    }
  })().catch(() => {}).finally(done);
  await Promise.all([up, down]);
}
