/**
 * Reading one file field out of a `multipart/form-data` body as it streams
 * in, without holding the body (or the file) in memory: the runtime's
 * `formData()` reads it whole.
 *
 * @module
 */
import { Buffer } from "node:buffer";
import { ValidationError } from "../core/errors.ts";

/** Longest header block of one part. */
const MAX_HEADER_BYTES = 16 * 1024;

function bad(why: string): never {
  throw new ValidationError(`Cannot read multipart upload as ${why}`, { code: "bad_multipart" });
}

/** The boundary of a `multipart/form-data` content type. */
export function boundaryOf(contentType: string): string {
  const m = /;\s*boundary=(?:"([^"]+)"|([^;\s]+))/i.exec(contentType);
  const boundary = m?.[1] ?? m?.[2];
  if (!boundary || boundary.length > 70) bad("its content type names no valid boundary");
  return boundary;
}

/** Longest value of a text field read besides the file (task.toml overrides are at most 64 KiB). */
export const MAX_TEXT_FIELD_BYTES = 64 * 1024;

/** What the headers of one part say. */
function partOf(headers: string): { name: string | null; filename: string | null } {
  const disposition = headers.split("\r\n").find((h) => /^content-disposition\s*:/i.test(h)) ?? "";
  const name = /;\s*name="([^"]*)"/i.exec(disposition)?.[1] ?? null;
  const filename = /;\s*filename="([^"]*)"/i.exec(disposition)?.[1] ?? null;
  return { name, filename };
}

/**
 * Streams the content of the file field `field` of a multipart body to
 * `write`, skipping every other part but the small fields named in `texts`,
 * whose values it fills in (each up to {@linkcode MAX_TEXT_FIELD_BYTES}).
 *
 * @returns The field's file name, or null when the body has no such file field.
 * @throws {ValidationError} When the body is not well-formed multipart, or a text field is too long.
 */
export async function streamFileField(
  body: ReadableStream<Uint8Array>,
  boundary: string,
  field: string,
  write: (chunk: Uint8Array) => Promise<void>,
  texts: Map<string, string | null> = new Map(),
): Promise<string | null> {
  let text: { name: string; parts: Buffer[]; bytes: number } | null = null;
  const endText = () => {
    if (text) texts.set(text.name, Buffer.concat(text.parts).toString("utf8"));
    text = null;
  };
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  // The body starts with the boundary itself; a CRLF before it makes every delimiter look alike.
  let buf: Buffer = Buffer.from("\r\n");
  type State = "preamble" | "after" | "headers" | "body" | "end";
  let state = "preamble" as State;
  let current: string | null = null;
  let found: string | null = null;
  const take = async (data: Buffer) => {
    if (text && data.byteLength) {
      text.bytes += data.byteLength;
      if (text.bytes > MAX_TEXT_FIELD_BYTES) bad(`field '${text.name}' is longer than ${MAX_TEXT_FIELD_BYTES} bytes`);
      text.parts.push(Buffer.from(data));
    }
    if (current !== null && data.byteLength) await write(new Uint8Array(data));
  };
  const step = async (): Promise<boolean> => {
    if (state === "preamble" || state === "body") {
      const at = buf.indexOf(delimiter);
      if (at < 0) {
        // Keep what may be the start of a delimiter.
        const keep = Math.min(buf.byteLength, delimiter.byteLength - 1);
        if (state === "body") await take(buf.subarray(0, buf.byteLength - keep));
        buf = buf.subarray(buf.byteLength - keep);
        return false;
      }
      if (state === "body") await take(buf.subarray(0, at));
      if (current !== null) found = current;
      current = null;
      endText();
      buf = buf.subarray(at + delimiter.byteLength);
      state = "after";
      return true;
    }
    if (state === "after") {
      if (buf.byteLength < 2) return false;
      const next = buf.subarray(0, 2).toString("latin1");
      if (next === "--") state = "end";
      else if (next === "\r\n") state = "headers";
      else bad("a boundary is followed by neither a line break nor '--'");
      buf = buf.subarray(2);
      return state !== "end";
    }
    if (state === "headers") {
      const at = buf.indexOf("\r\n\r\n");
      if (at < 0) {
        if (buf.byteLength > MAX_HEADER_BYTES) bad(`a part's headers are longer than ${MAX_HEADER_BYTES} bytes`);
        return false;
      }
      const part = partOf(buf.subarray(0, at).toString("utf8"));
      current = part.name === field && part.filename !== null && found === null ? part.filename : null;
      if (current === null && part.name !== null && texts.has(part.name)) {
        text = { name: part.name, parts: [], bytes: 0 };
      }
      buf = buf.subarray(at + 4);
      state = "body";
      return true;
    }
    return false;
  };
  for await (const chunk of body) {
    if (state === "end") continue;
    buf = buf.byteLength ? Buffer.concat([buf, chunk]) : Buffer.from(chunk);
    while (await step());
  }
  if (state !== "end") bad("the body ends before its closing boundary");
  return found;
}
