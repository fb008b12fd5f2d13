/**
 * The last line of a stream of output, kept as it goes by: what a failure
 * list shows beside an instance's exit code without reading its whole log.
 *
 * @module
 */
import { MAX_STDERR_LINE_CHARS } from "../core/schema.ts";

/** Bytes kept from the end of the stream: enough for a line of the longest shown length. */
const KEPT_BYTES = 4 * MAX_STDERR_LINE_CHARS;

/** Keeps the tail of a byte stream; `line()` is its last non-empty line, clipped, or undefined. */
export function lastLineKeeper(): { add(chunk: Uint8Array): void; line(): string | undefined } {
  let tail = new Uint8Array(0);
  return {
    add(chunk) {
      const joined = new Uint8Array(Math.min(KEPT_BYTES, tail.length + chunk.length));
      const fromChunk = Math.min(chunk.length, joined.length);
      joined.set(tail.subarray(tail.length - (joined.length - fromChunk)), 0);
      joined.set(chunk.subarray(chunk.length - fromChunk), joined.length - fromChunk);
      tail = joined;
    },
    line() {
      // A cut through a multi-byte character at the start becomes U+FFFD, then is dropped with the partial line.
      const lines = new TextDecoder().decode(tail).split(/\r?\n|\r/);
      const last = lines.findLast((l) => l.trim() !== "");
      if (last === undefined) return undefined;
      const clean = last.replaceAll("\t", " ").replace(/\p{Cc}/gu, "").trimEnd();
      return clean.length > MAX_STDERR_LINE_CHARS ? `${clean.slice(0, MAX_STDERR_LINE_CHARS - 1)}…` : clean;
    },
  };
}
