/**
 * Streaming a large request body to the manager, with backpressure and in
 * bounded memory: over HTTP/1.1 (the manager's front door speaks nothing
 * else) in chunks of 1 MiB. Not through `fetch`: the manager stores an
 * upload as it reads it, so it reads more slowly than a client on the same
 * machine sends, and Deno's HTTP/1.1 server then stalls and buffers more
 * and more (a 1 GiB upload took 27 s instead of 9), while fetch cuts a body
 * into small chunks, which stalls further.
 *
 * @module
 */
import { once } from "node:events";
import http from "node:http";
import https from "node:https";
import { Readable } from "node:stream";

/** HTTP/1.1 chunk size. */
const CHUNK_BYTES = 1024 * 1024;

/** A request to stream. */
export interface UploadRequest {
  url: URL;
  method: string;
  headers: Record<string, string>;
  body: ReadableStream<Uint8Array>;
  /** CA certificates (PEM) to trust for an HTTPS manager with a private CA (`--ca-file`). */
  caCerts?: string[];
}

function toHeaders(raw: Record<string, string | string[] | number | undefined>): Headers {
  const h = new Headers();
  for (const [k, v] of Object.entries(raw)) if (v !== undefined) h.set(k, String(v));
  return h;
}

/** Writes `body` to a writable node stream, waiting for drain, in pieces of at least {@linkcode CHUNK_BYTES}. */
async function pump(
  body: ReadableStream<Uint8Array>,
  out: { write(chunk: Uint8Array): boolean; end(): void; once(event: string, fn: () => void): unknown },
  stop: () => boolean,
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
    if (size >= CHUNK_BYTES) await send();
  }
  if (size > 0 && !stop()) await send();
  out.end();
}

/**
 * Streams `req.body` to the manager; resolves with its answer (which may
 * come before the whole body was sent, e.g. a 413).
 */
export function streamUpload(req: UploadRequest): Promise<Response> {
  return new Promise((resolve, reject) => {
    let answered = false;
    const out = (req.url.protocol === "https:" ? https : http).request(
      req.url,
      { method: req.method, headers: req.headers, ...(req.caCerts ? { ca: req.caCerts } : {}) },
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
    pump(req.body, out, () => answered).catch((e) => {
      out.destroy();
      if (!answered) reject(e);
    });
  });
}
