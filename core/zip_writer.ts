/**
 * A small zip writer for packages: deflated files and folders with Unix
 * modes, a fixed date, no extra fields, streamed out as they are made. Its
 * bytes are those zip.js (`@zip.js/zip.js`, as `package_zip.ts` configures
 * it) writes for the same entries, so that a folder keeps its digest
 * whichever of the two zipped it: deflate is the runtime's own, fed in the
 * 256 KiB pieces zip.js feeds it (each piece ends in a flush, so the pieces
 * show in the bytes), and its CRC-32 is the one its gzip trailer carries.
 * Here so that `parallelic submit` does not load zip.js (most of its
 * start-up); it writes no Zip64, so larger packages are zip.js's
 * ({@linkcode fitsWithoutZip64}).
 *
 * @module
 */

/** The size of the pieces deflate is fed, as zip.js cuts them (its `chunkSize`). */
const PIECE_BYTES = 256 * 1024;
/** 1980-01-01 00:00 in MS-DOS date and time fields: the fixed date of every entry. */
const DOS_DATE = 0x0021;
const DOS_TIME = 0;
/** General-purpose flags: sizes and CRC follow the data; the name is UTF-8. */
const FLAG_DATA_DESCRIPTOR = 0x0008;
const FLAG_UTF8 = 0x0800;
const METHOD_STORE = 0;
const METHOD_DEFLATE = 8;
/** "2.0": deflate. */
const VERSION_NEEDED = 20;
/** Made on Unix (high byte 3), so that readers take the modes in the external attributes. */
const VERSION_MADE_BY = 0x0300;
/** The MS-DOS folder attribute, set beside a folder's Unix mode. */
const DOS_DIRECTORY = 0x10;
/** A gzip member's fixed header (no name, no extra fields) and its trailer (CRC-32, size). */
const GZIP_HEADER_BYTES = 10;
const GZIP_TRAILER_BYTES = 8;
const MAX_32 = 0xffffffff;

const encoder = new TextEncoder();

/** One entry's central directory fields. */
interface Written {
  name: Uint8Array;
  flags: number;
  method: number;
  crc: number;
  compressedBytes: number;
  bytes: number;
  externalAttributes: number;
  offset: number;
}

/**
 * Whether a zip of files of `bytes` in `entries` entries (names of `nameBytes` in all) surely needs no Zip64:
 * fewer than 65,535 entries and every offset under 4 GiB, deflate's worst growth counted.
 */
export function fitsWithoutZip64(entries: number, bytes: number, nameBytes: number): boolean {
  const worstBytes = bytes + Math.ceil(bytes / 1000) + entries * 128 + 2 * nameBytes;
  return entries < 0xffff && worstBytes < MAX_32;
}

/** Whether zip.js writes `name` with the UTF-8 flag: when any byte of it is not printable ASCII. */
const utf8Flag = (name: Uint8Array) => name.some((b) => b < 0x20 || b > 0x7e) ? FLAG_UTF8 : 0;

/** `source` cut into pieces as zip.js cuts them: whole pieces while more than one piece waits, the rest at the end. */
async function* pieces(
  source: AsyncIterable<Uint8Array> | Iterable<Uint8Array>,
): AsyncGenerator<Uint8Array<ArrayBuffer>> {
  let waiting: Uint8Array[] = [];
  let waitingBytes = 0;
  const take = (size: number) => {
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const first = waiting[0];
      const n = Math.min(first.byteLength, size - at);
      out.set(first.subarray(0, n), at);
      at += n;
      if (n === first.byteLength) waiting.shift();
      else waiting[0] = first.subarray(n);
    }
    waitingBytes -= size;
    return out;
  };
  for await (const chunk of source) {
    if (chunk.byteLength === 0) continue;
    waiting.push(chunk);
    waitingBytes += chunk.byteLength;
    while (waitingBytes > PIECE_BYTES) yield take(PIECE_BYTES);
  }
  if (waitingBytes > 0) yield take(waitingBytes);
  waiting = [];
}

/** Writes a zip to `out` entry by entry; {@linkcode close} ends it, {@linkcode abort} fails it. */
export class ZipWriter {
  #out: WritableStreamDefaultWriter<Uint8Array>;
  #offset = 0;
  #written: Written[] = [];

  constructor(out: WritableStream<Uint8Array>) {
    this.#out = out.getWriter();
  }

  async #write(bytes: Uint8Array): Promise<void> {
    await this.#out.write(bytes);
    this.#offset += bytes.byteLength;
  }

  /** A local header; sizes and CRC are zero when a data descriptor follows. */
  #localHeader(name: Uint8Array, flags: number, method: number): Uint8Array {
    const head = new Uint8Array(30 + name.byteLength);
    const v = new DataView(head.buffer);
    v.setUint32(0, 0x04034b50, true);
    v.setUint16(4, VERSION_NEEDED, true);
    v.setUint16(6, flags, true);
    v.setUint16(8, method, true);
    v.setUint16(10, DOS_TIME, true);
    v.setUint16(12, DOS_DATE, true);
    v.setUint16(26, name.byteLength, true);
    head.set(name, 30);
    return head;
  }

  /** Adds a folder (`path` ends in `/`) with Unix mode `mode` (type bits included). */
  async directory(path: string, mode: number): Promise<void> {
    const name = encoder.encode(path);
    const flags = utf8Flag(name);
    const offset = this.#offset;
    await this.#write(this.#localHeader(name, flags, METHOD_STORE));
    this.#written.push({
      name,
      flags,
      method: METHOD_STORE,
      crc: 0,
      compressedBytes: 0,
      bytes: 0,
      externalAttributes: ((mode << 16) | DOS_DIRECTORY) >>> 0,
      offset,
    });
  }

  /**
   * Adds a file (or a link, whose content is its target) with Unix mode
   * `mode`, deflating `content`: a stream, or bytes in memory (a small file
   * read whole, without a stream's cost).
   */
  async file(path: string, mode: number, content: ReadableStream<Uint8Array> | Uint8Array): Promise<void> {
    const name = encoder.encode(path);
    const flags = utf8Flag(name) | FLAG_DATA_DESCRIPTOR;
    const offset = this.#offset;
    try {
      await this.#write(this.#localHeader(name, flags, METHOD_DEFLATE));
    } catch (e) {
      if (content instanceof ReadableStream) await content.cancel(e).catch(() => {});
      throw e;
    }
    const { crc, compressedBytes, bytes } = await this.#deflate(content);
    const descriptor = new Uint8Array(16);
    const v = new DataView(descriptor.buffer);
    v.setUint32(0, 0x08074b50, true);
    v.setUint32(4, crc, true);
    v.setUint32(8, compressedBytes, true);
    v.setUint32(12, bytes, true);
    await this.#write(descriptor);
    this.#written.push({
      name,
      flags,
      method: METHOD_DEFLATE,
      crc,
      compressedBytes,
      bytes,
      externalAttributes: (mode << 16) >>> 0,
      offset,
    });
  }

  /** Deflates `content` into the zip through a gzip stream, whose header is dropped and whose trailer gives the CRC. */
  async #deflate(
    content: ReadableStream<Uint8Array> | Uint8Array,
  ): Promise<{ crc: number; compressedBytes: number; bytes: number }> {
    const gzip = new CompressionStream("gzip");
    let bytes = 0;
    const feed = async () => {
      const input = gzip.writable.getWriter();
      try {
        for await (const piece of pieces(content instanceof Uint8Array ? [content] : content)) {
          bytes += piece.byteLength;
          await input.write(piece);
        }
        await input.close();
      } catch (e) {
        await input.abort(e).catch(() => {});
        throw e;
      }
    };
    let skip = GZIP_HEADER_BYTES;
    let held = new Uint8Array(0);
    let compressedBytes = 0;
    const drain = async () => {
      for await (let chunk of gzip.readable) {
        if (skip > 0) {
          const n = Math.min(skip, chunk.byteLength);
          skip -= n;
          chunk = chunk.subarray(n);
        }
        // The last 8 bytes are the trailer: hold them back until more comes.
        let all = chunk;
        if (held.byteLength > 0) {
          all = new Uint8Array(held.byteLength + chunk.byteLength);
          all.set(held);
          all.set(chunk, held.byteLength);
        }
        const out = all.subarray(0, Math.max(0, all.byteLength - GZIP_TRAILER_BYTES));
        held = all.slice(out.byteLength);
        if (out.byteLength > 0) {
          compressedBytes += out.byteLength;
          await this.#write(out);
        }
      }
    };
    await Promise.all([feed(), drain()]);
    const crc = new DataView(held.buffer, held.byteOffset, GZIP_TRAILER_BYTES).getUint32(0, true);
    return { crc, compressedBytes, bytes };
  }

  /** Writes the central directory and closes the output. */
  async close(): Promise<void> {
    const start = this.#offset;
    for (const e of this.#written) {
      const record = new Uint8Array(46 + e.name.byteLength);
      const v = new DataView(record.buffer);
      v.setUint32(0, 0x02014b50, true);
      v.setUint16(4, VERSION_MADE_BY, true);
      v.setUint16(6, VERSION_NEEDED, true);
      v.setUint16(8, e.flags, true);
      v.setUint16(10, e.method, true);
      v.setUint16(12, DOS_TIME, true);
      v.setUint16(14, DOS_DATE, true);
      v.setUint32(16, e.crc, true);
      v.setUint32(20, e.compressedBytes, true);
      v.setUint32(24, e.bytes, true);
      v.setUint16(28, e.name.byteLength, true);
      v.setUint32(38, e.externalAttributes, true);
      v.setUint32(42, e.offset, true);
      record.set(e.name, 46);
      await this.#write(record);
    }
    const end = new Uint8Array(22);
    const v = new DataView(end.buffer);
    v.setUint32(0, 0x06054b50, true);
    v.setUint16(8, this.#written.length, true);
    v.setUint16(10, this.#written.length, true);
    v.setUint32(12, this.#offset - start, true);
    v.setUint32(16, start, true);
    await this.#write(end);
    await this.#out.close();
  }

  /** Fails the output with `reason` (a reader of it sees the error, not a short zip). */
  async abort(reason: unknown): Promise<void> {
    await this.#out.abort(reason).catch(() => {});
  }
}
