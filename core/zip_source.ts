/**
 * Random access to a zip, in memory or in a file on disk, and the two places
 * where packages are read from raw bytes beside zip.js.
 *
 * Why these raw readers are kept beside zip.js (measured, figures in the
 * commit that added this note):
 * - {@linkcode countEntries} refuses a directory of millions of entries after
 *   reading the limit's worth of fixed-size headers, in milliseconds. zip.js
 *   parses the directory, an object per entry, for seconds and hundreds of
 *   MiB before its `onprogress` guard stops it: a security check it lacks.
 * - {@linkcode readSmallEntry} reads task.toml and symlink targets with one
 *   read and a synchronous inflate, three orders of magnitude faster than
 *   zip.js's `getData` and its stream machinery, on the path of every submit
 *   and package check. It answers null for anything unusual, so that zip.js
 *   decides every doubtful case (core/package_test.ts holds both to one
 *   verdict).
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { crc32, inflateRawSync } from "node:zlib";

/** A zip to read: its size and byte ranges. */
export interface ZipSource {
  /** Size of the zip, in bytes. */
  readonly size: number;
  /** Reads `length` bytes at `at` (fewer at the end). */
  read(at: number, length: number): Promise<Uint8Array>;
  /** A zip.js reader of the same bytes. */
  reader(): zip.Reader<unknown>;
}

/** A zip held in memory. */
export function bytesSource(bytes: Uint8Array): ZipSource {
  return {
    size: bytes.byteLength,
    read: (at, length) => Promise.resolve(bytes.subarray(at, Math.min(bytes.byteLength, at + length))),
    reader: () => new zip.Uint8ArrayReader(bytes),
  };
}

/** A zip.js reader over a {@linkcode ZipSource}'s reads. */
class SourceReader extends zip.Reader<ZipSource> {
  #source: ZipSource;
  constructor(source: ZipSource) {
    super(source);
    this.#source = source;
    this.size = source.size;
  }
  override readUint8Array(index: number, length: number): Promise<Uint8Array> {
    return this.#source.read(index, length);
  }
}

/** A zip in a file on disk, read in place (close it when done). */
export async function fileSource(path: string): Promise<ZipSource & Disposable> {
  const file = await Deno.open(path, { read: true });
  const size = (await file.stat()).size;
  // zip.js may ask for several ranges at once; a seek and its read must not interleave with another's.
  let queue: Promise<unknown> = Promise.resolve();
  const source: ZipSource & Disposable = {
    size,
    read(at, length) {
      const result = queue.then(async () => {
        const want = Math.max(0, Math.min(length, size - at));
        const data = new Uint8Array(want);
        await file.seek(at, Deno.SeekMode.Start);
        let got = 0;
        while (got < want) {
          const n = await file.read(data.subarray(got));
          if (n === null) break;
          got += n;
        }
        return data.subarray(0, got);
      });
      queue = result.catch(() => undefined);
      return result;
    },
    reader: () => new SourceReader(source),
    [Symbol.dispose]: () => file.close(),
  };
  return source;
}

/** Reads a source through a block buffer, for many small reads close together (a central directory). */
function blockReader(source: ZipSource, blockBytes = 256 * 1024) {
  let start = 0;
  let block: Uint8Array = new Uint8Array(0);
  return async (at: number, length: number): Promise<DataView | null> => {
    if (at < start || at + length > start + block.byteLength) {
      start = at;
      block = await source.read(at, Math.max(length, blockBytes));
      if (block.byteLength < length) return null;
    }
    return new DataView(block.buffer, block.byteOffset + at - start, length);
  };
}

/** Where the end-of-directory record is: searched backwards over the longest comment a zip may carry. */
async function findEnd(source: ZipSource): Promise<{ at: number; tail: Uint8Array } | null> {
  const from = Math.max(0, source.size - 22 - 65535);
  const tail = await source.read(from, source.size - from);
  const view = new DataView(tail.buffer, tail.byteOffset, tail.byteLength);
  for (let i = tail.byteLength - 22; i >= 0; i--) {
    if (view.getUint32(i, true) === 0x06054b50) return { at: i, tail };
  }
  return null;
}

/**
 * Counts the central directory's entries straight from the zip's bytes,
 * stopping as soon as there are more than `max`: a zip of millions of tiny
 * entries is refused after reading `max` fixed-size headers, before any
 * entry object is made. Returns null when the directory cannot be found
 * this simply (the zip reader then decides, with its own entry guard).
 */
export async function countEntries(zipped: Uint8Array | ZipSource, max: number): Promise<number | null> {
  const source = zipped instanceof Uint8Array ? bytesSource(zipped) : zipped;
  const end = await findEnd(source);
  if (!end) return null;
  const view = new DataView(end.tail.buffer, end.tail.byteOffset, end.tail.byteLength);
  const eocd = end.at;
  let offset = view.getUint32(eocd + 16, true);
  let declared = view.getUint16(eocd + 10, true);
  if ((offset === 0xffffffff || declared === 0xffff) && eocd >= 20 && view.getUint32(eocd - 20, true) === 0x07064b50) {
    const z64 = Number(view.getBigUint64(eocd - 20 + 8, true));
    const record = z64 + 56 <= source.size ? await source.read(z64, 56) : null;
    if (!record || record.byteLength < 56) return null;
    const r = new DataView(record.buffer, record.byteOffset, 56);
    if (r.getUint32(0, true) !== 0x06064b50) return null;
    offset = Number(r.getBigUint64(48, true));
    declared = Number(r.getBigUint64(32, true));
  }
  if (declared > max) return declared;
  const at = blockReader(source);
  let count = 0;
  for (let pos = offset; pos + 46 <= source.size;) {
    const header = await at(pos, 46);
    if (!header || header.getUint32(0, true) !== 0x02014b50) break;
    if (++count > max) return count;
    pos += 46 + header.getUint16(28, true) + header.getUint16(30, true) + header.getUint16(32, true);
  }
  return count === 0 && declared > 0 ? null : count;
}

/** Where the central directory starts, from the end record; null when there is none plain to read (zip64, comments). */
async function centralDirectoryOffset(source: ZipSource): Promise<number | null> {
  if (source.size < 22) return null;
  const end = await source.read(source.size - 22, 22);
  const view = new DataView(end.buffer, end.byteOffset, end.byteLength);
  if (view.getUint32(0, true) !== 0x06054b50) return null;
  const offset = view.getUint32(16, true);
  return offset === 0xffffffff ? null : offset;
}

/**
 * Reads a small stored or deflated entry straight from the zip's bytes;
 * null when the entry is anything else or does not add up, for the careful
 * path to read and word.
 */
export async function readSmallEntry(source: ZipSource, entry: zip.Entry, limit: number): Promise<Uint8Array | null> {
  if (entry.uncompressedSize > limit || entry.compressedSize > 1024 * 1024) return null;
  const located = await entryData(source, entry);
  if (!located) return null;
  let out: Uint8Array;
  try {
    out = located.method === 0
      ? located.raw.slice()
      : new Uint8Array(inflateRawSync(located.raw, { maxOutputLength: limit + 1 }));
  } catch {
    return null;
  }
  if (out.byteLength !== entry.uncompressedSize || (crc32(out) >>> 0) !== entry.crc32) return null;
  return out;
}

/**
 * Finds a stored or deflated entry's data in the zip's bytes (read whole:
 * for entries of at most a few MiB); null when the entry is anything else or
 * its headers do not agree, for the careful path to read and word.
 */
export async function entryData(
  source: ZipSource,
  entry: zip.Entry,
): Promise<{ raw: Uint8Array; method: number } | null> {
  const method = entry.compressionMethod;
  if (entry.encrypted || entry.crc32 === undefined || (method !== 0 && method !== 8)) return null;
  const at = entry.offset;
  if (at + 30 > source.size) return null;
  const head = await source.read(at, 30);
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength);
  if (view.getUint32(0, true) !== 0x04034b50) return null;
  // The local header must say what the central directory says (zip.js refuses an "ambiguous archive" otherwise):
  // same method, and, without a data descriptor (flag bit 3), the same CRC and sizes.
  const flags = view.getUint16(6, true);
  if (view.getUint16(8, true) !== method) return null;
  if (flags & 0x08) return null;
  if (
    view.getUint32(14, true) !== entry.crc32 || view.getUint32(18, true) !== entry.compressedSize ||
    view.getUint32(22, true) !== entry.uncompressedSize
  ) return null;
  const start = at + 30 + view.getUint16(26, true) + view.getUint16(28, true);
  // Its data must end before the central directory starts.
  const directory = await centralDirectoryOffset(source);
  if (directory === null || start + entry.compressedSize > directory) return null;
  const raw = await source.read(start, entry.compressedSize);
  return raw.byteLength === entry.compressedSize ? { raw, method } : null;
}
