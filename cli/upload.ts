/**
 * Streaming a large request body to the manager, with backpressure and in
 * bounded memory.
 *
 * Over HTTP/2 when the manager speaks it (cleartext with prior knowledge for
 * `http://`, ALPN for `https://`), else HTTP/1.1 in chunks of 1 MiB. Not
 * through `fetch`: the manager stores an upload as it reads it, so it reads
 * more slowly than a client on the same machine sends, and Deno's HTTP/1.1
 * server then stalls and buffers more and more (a 1 GiB upload took 27 s
 * instead of 9), while fetch cuts a body into small chunks, which stalls
 * further. HTTP/2's per-stream flow control keeps both sides in step.
 *
 * @module
 */
import { once } from "node:events";
import http from "node:http";
import http2 from "node:http2";
import https from "node:https";
import { Readable } from "node:stream";

/** HTTP/1.1 chunk size. */
const CHUNK_BYTES = 1024 * 1024;
/** How long the HTTP/2 handshake may take before HTTP/1.1 is used instead. */
const H2_HANDSHAKE_MS = 3000;

/** A request to stream. */
export interface UploadRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body: ReadableStream<Uint8Array>;
}

function toHeaders(raw: Record<string, string | string[] | number | undefined>): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(raw)) if (v !== undefined && !k.startsWith(":")) h.set(k, String(v));
  return h;
}

/** Writes `body` to a writable node stream, waiting for drain, in pieces of at least `chunkBytes`. */
async function pump(
  body: ReadableStream<Uint8Array>,
  out: { write(chunk: Uint8Array): boolean; end(): void; once(event: string, fn: () => void): unknown },
  stop: () => boolean,
  chunkBytes: number,
): Promise<void> {
  let parts: Uint8Array[] = [];
  let size = 0;
  const send = async () => {
    const joined = parts.length === 1 ? parts[0] : new Uint8Array(size);
    if (parts.length > 1) {
      let at = 0;
      for (const p of parts) joined.set(p, at), at += p.byteLength;
    }
    parts = [];
    size = 0;
    // deno-lint-ignore no-explicit-any
    if (!out.write(joined)) await once(out as any, "drain");
  };
  for await (const chunk of body) {
    if (stop()) return;
    parts.push(chunk);
    size += chunk.byteLength;
    if (size >= chunkBytes) await send();
  }
  if (size > 0 && !stop()) await send();
  out.end();
}

/** An HTTP/2 session once the server's settings arrived, or null when it does not speak HTTP/2. */
function openH2(url: URL): Promise<http2.ClientHttp2Session | null> {
  return new Promise((resolve) => {
    const session = http2.connect(url.origin);
    const timer = setTimeout(() => give(null), H2_HANDSHAKE_MS);
    const give = (s: http2.ClientHttp2Session | null) => {
      clearTimeout(timer);
      session.removeAllListeners("remoteSettings");
      if (!s) {
        session.on("error", () => {});
        session.destroy();
      }
      resolve(s);
    };
    session.once("remoteSettings", () => give(session));
    session.once("error", () => give(null));
    session.once("close", () => give(null));
  });
}

function uploadH2(session: http2.ClientHttp2Session, req: UploadRequest): Promise<Response> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const headers: http2.OutgoingHttpHeaders = { ":method": req.method, ":path": req.url.pathname + req.url.search };
    for (const [k, v] of Object.entries(req.headers)) headers[k.toLowerCase()] = v;
    const stream = session.request(headers);
    stream.once("response", (h) => {
      answered = true;
      resolve(
        new Response(Readable.toWeb(stream) as ReadableStream<Uint8Array>, {
          status: Number(h[":status"]),
          headers: toHeaders(h),
        }),
      );
    });
    stream.once("close", () => session.close());
    stream.once("error", (e) => answered || reject(e));
    session.once("error", (e) => answered || reject(e));
    pump(req.body, stream, () => answered, 64 * 1024).catch((e) => {
      stream.destroy();
      if (!answered) reject(e);
    });
  });
}

function uploadH1(req: UploadRequest): Promise<Response> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const out = (req.url.protocol === "https:" ? https : http).request(
      req.url,
      { method: req.method, headers: req.headers },
      (incoming) => {
        answered = true;
        resolve(
          new Response(Readable.toWeb(incoming) as ReadableStream<Uint8Array>, {
            status: incoming.statusCode,
            headers: toHeaders(incoming.headers),
          }),
        );
      },
    );
    out.on("error", (e) => answered || reject(e));
    pump(req.body, out, () => answered, CHUNK_BYTES).catch((e) => {
      out.destroy();
      if (!answered) reject(e);
    });
  });
}

/**
 * Streams `req.body` to the manager; resolves with its answer (which may
 * come before the whole body was sent, e.g. a 413).
 */
export async function streamUpload(req: UploadRequest): Promise<Response> {
  const session = await openH2(req.url);
  return session ? await uploadH2(session, req) : await uploadH1(req);
}
