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
 * - passes each request on to the gateway's Deno.serve over a Unix socket that
 *   only this process can reach, with the client's address in
 *   {@linkcode PEER_HEADER} (a client's own copy is removed). It reads the
 *   framing of requests (Content-Length) so that every request of a kept-alive
 *   connection gets these checks and that header; a request it cannot frame
 *   that simply (chunked, upgrades) is passed with `connection: close`.
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

/** How a request's body is framed: its length, or "close" when the connection must end after it. */
type Framing = number | "close";

/** Reads a request head's framing; anything but one plain Content-Length (or none) is "close". */
function framing(lines: string[]): Framing {
  let length: number | null = null;
  for (const line of lines.slice(1)) {
    const colon = line.indexOf(":");
    const name = line.slice(0, colon).trim().toLowerCase();
    const value = line.slice(colon + 1).trim();
    if (name === "transfer-encoding" || name === "upgrade") return "close";
    if (name === "content-length") {
      if (length !== null || !/^\d{1,15}$/.test(value)) return "close";
      length = Number(value);
    }
  }
  return length ?? 0;
}

/**
 * The request head with the client's peer header replaced by the front
 * door's, and, for a request framed "close", its connection headers by `close`.
 */
function rewriteHead(lines: string[], peer: string, close: boolean): string {
  const drop = close ? /^(x-parallelic-peer|connection|keep-alive)\s*:/i : /^x-parallelic-peer\s*:/i;
  const kept = lines.filter((line, i) => i === 0 || !drop.test(line));
  return `${kept.join("\r\n")}\r\n${PEER_HEADER}: ${peer}\r\n${close ? "connection: close\r\n" : ""}\r\n`;
}

/** Reads from a connection into a buffer the caller takes bytes from. */
class Buffered {
  pending = new Uint8Array(0);
  #chunk = new Uint8Array(65_536);
  constructor(readonly conn: Deno.Conn) {}
  /** Reads more; false at the end (or on an error), "late" when `deadline` came first. */
  async fill(deadline?: Promise<"late">): Promise<boolean | "late"> {
    const read = this.conn.read(this.#chunk).catch(() => null);
    const n = deadline ? await Promise.race([read, deadline]) : await read;
    if (n === "late") return "late";
    if (n === null) return false;
    const next = new Uint8Array(this.pending.byteLength + n);
    next.set(this.pending);
    next.set(this.#chunk.subarray(0, n), this.pending.byteLength);
    this.pending = next;
    return true;
  }
  /** Takes up to `max` pending bytes. */
  take(max: number): Uint8Array {
    const out = this.pending.subarray(0, max);
    this.pending = this.pending.subarray(out.byteLength);
    return out;
  }
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
  const timers = new Set<ReturnType<typeof setTimeout>>();
  const deadline = (ms: number) => {
    let timer: ReturnType<typeof setTimeout>;
    const late = new Promise<"late">((r) =>
      timers.add(timer = setTimeout(() => (timers.delete(timer), r("late")), ms))
    );
    return { late, clear: () => (clearTimeout(timer), timers.delete(timer)) };
  };

  /** Reads a request head: the first against a deadline from connecting, later ones from their first byte. */
  async function readHead(
    reader: Buffered,
    first: boolean,
  ): Promise<{ lines: string[] } | "end" | "late" | "too large"> {
    if (!first && reader.pending.byteLength === 0 && !(await reader.fill())) return "end";
    const limit = deadline(headerTimeoutMs);
    try {
      for (let from = 0;;) {
        const end = headEnd(reader.pending, from);
        if (end >= 0) {
          const lines = new TextDecoder().decode(reader.take(end + 4).subarray(0, end)).split("\r\n");
          return { lines };
        }
        if (reader.pending.byteLength > maxHeaderBytes) return "too large";
        from = Math.max(0, reader.pending.byteLength - 3);
        const got = await reader.fill(limit.late);
        if (got === "late") return "late";
        if (!got) return "end";
      }
    } finally {
      limit.clear();
    }
  }

  async function handle(client: Deno.Conn) {
    const peer = (client.remoteAddr as Deno.NetAddr).hostname;
    open.set(peer, (open.get(peer) ?? 0) + 1);
    let upstream: Deno.Conn | null = null;
    let down: Promise<void> | null = null;
    const answered = { bytes: 0 };
    // A client that does not read its refusal (or never finishes a TLS handshake) gets a second to, then is closed.
    const refuse = async (bytes: Uint8Array) => {
      await Promise.race([writeAll(client, bytes).catch(() => {}), sleep(1000)]);
      closeQuietly(client);
    };
    const done = () => {
      closeQuietly(client);
      if (upstream) closeQuietly(upstream);
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
      const reader = new Buffered(client);
      for (let first = true;; first = false) {
        const head = await readHead(reader, first);
        if (head === "end") break;
        if (head === "late" || head === "too large") {
          // Mid-connection the previous answer may still be on its way: no refusal of our own is written into it.
          if (!first) break;
          return await refuse(
            head === "late"
              ? refusal(
                408,
                "Request Timeout",
                "header_timeout",
                `The request head did not come within ${headerTimeoutMs} ms of connecting`,
              )
              : refusal(
                431,
                "Request Header Fields Too Large",
                "header_too_large",
                `Request head over ${maxHeaderBytes} bytes`,
              ),
          );
        }
        const frame = framing(head.lines);
        if (!upstream) {
          upstream = await Deno.connect({ transport: "unix", path: options.upstreamPath });
          conns.add(upstream);
          down = pipe(upstream, client, (n) => answered.bytes += n).finally(done);
        }
        await writeAll(upstream, encoder.encode(rewriteHead(head.lines, peer, frame === "close")));
        // The body. Silence is cut off while the request still comes, not while its answer does (a close-framed
        // body has no end but the client's, so its answer starting is what tells).
        let left = frame === "close" ? Infinity : frame;
        const answeredBefore = answered.bytes;
        while (left > 0) {
          if (reader.pending.byteLength === 0) {
            const answering = frame === "close" && answered.bytes > answeredBefore;
            const idle = answering ? null : deadline(idleTimeoutMs);
            const got = await reader.fill(idle?.late).finally(() => idle?.clear());
            if (got === "late" && frame === "close" && answered.bytes > answeredBefore) continue;
            if (got !== true) break;
          }
          const part = reader.take(left);
          left -= part.byteLength;
          await writeAll(upstream, part);
        }
        if (left > 0 || frame === "close") break;
      }
      // The client is gone, silent mid-body, or done with a close-framed request whose answer has ended.
      done();
      await down;
    } catch {
      /* a connection reset: nothing to answer */
    } finally {
      done();
      if (upstream) conns.delete(upstream);
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
      // Nagle's algorithm would hold an event stream's second small write until the client's delayed ACK of the first.
      // Deno's TLS connections offer no way to turn it off: over TLS such an event may come up to ~40 ms late.
      if (!options.tls) (conn as Deno.TcpConn).setNoDelay(true);
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
      for (const t of timers) clearTimeout(t);
    },
  };
}

/** Copies `from` to `to` until `from` ends, telling `copied` each time. */
async function pipe(from: Deno.Conn, to: Deno.Conn, copied: (n: number) => void): Promise<void> {
  const buf = new Uint8Array(65_536);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) return;
      copied(n);
      await writeAll(to, buf.subarray(0, n));
    }
  } catch { /* closed */ }
}
