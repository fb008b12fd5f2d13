/**
 * A small zip writer for hostile-package tests: every field a real zip
 * writer would get right (names as raw bytes, flags, modes, declared sizes,
 * compression method, entry counts) can be set wrong on purpose.
 *
 * @module
 */

/** One entry of {@linkcode rawZip}. */
export interface RawEntry {
  /** The name, as text (UTF-8) or raw bytes. */
  name: string | Uint8Array;
  /** The data (stored unless `deflate`). */
  data?: Uint8Array | string;
  /** Compress with deflate (method 8). */
  deflate?: boolean;
  /** Unix mode (type and permission bits), stored in the external attributes. @default {0o100644} */
  mode?: number;
  /** General-purpose flags. @default {0x800 (UTF-8 names) for text names, else 0} */
  flags?: number;
  /** Compression method written in the headers (a lie when set). */
  method?: number;
  /** Uncompressed size written in the headers (a lie when set). */
  declaredSize?: number;
}

const encoder = new TextEncoder();

async function deflateRaw(data: Uint8Array): Promise<Uint8Array> {
  const stream = new Blob([data as Uint8Array<ArrayBuffer>]).stream().pipeThrough(new CompressionStream("deflate-raw"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

function crc32(data: Uint8Array): number {
  let crc = ~0;
  for (const b of data) {
    crc ^= b;
    for (let k = 0; k < 8; k++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  return ~crc >>> 0;
}

/** Builds a zip from `entries`; `centralCopies` repeats each central directory record (entry-count bombs). */
export async function rawZip(entries: RawEntry[], options: { centralCopies?: number } = {}): Promise<Uint8Array> {
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  for (const e of entries) {
    const name = typeof e.name === "string" ? encoder.encode(e.name) : e.name;
    const raw = typeof e.data === "string" ? encoder.encode(e.data) : e.data ?? new Uint8Array();
    const body = e.deflate ? await deflateRaw(raw) : raw;
    const method = e.method ?? (e.deflate ? 8 : 0);
    const flags = e.flags ?? (typeof e.name === "string" ? 0x800 : 0);
    const size = e.declaredSize ?? raw.byteLength;
    const crc = crc32(raw);
    const local = new Uint8Array(30 + name.byteLength);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, 0x04034b50, true);
    lv.setUint16(4, 20, true);
    lv.setUint16(6, flags, true);
    lv.setUint16(8, method, true);
    lv.setUint32(14, crc, true);
    lv.setUint32(18, body.byteLength, true);
    lv.setUint32(22, size, true);
    lv.setUint16(26, name.byteLength, true);
    local.set(name, 30);
    const central = new Uint8Array(46 + name.byteLength);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, 0x02014b50, true);
    cv.setUint16(4, (3 << 8) | 20, true); // made by Unix
    cv.setUint16(6, 20, true);
    cv.setUint16(8, flags, true);
    cv.setUint16(10, method, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, body.byteLength, true);
    cv.setUint32(24, size, true);
    cv.setUint16(28, name.byteLength, true);
    cv.setUint32(38, ((e.mode ?? 0o100644) << 16) >>> 0, true);
    cv.setUint32(42, offset, true);
    central.set(name, 46);
    locals.push(local, body);
    for (let i = 0; i < (options.centralCopies ?? 1); i++) centrals.push(central);
    offset += local.byteLength + body.byteLength;
  }
  const cdSize = centrals.reduce((n, c) => n + c.byteLength, 0);
  const count = centrals.length;
  const end = new Uint8Array(22);
  const ev = new DataView(end.buffer);
  ev.setUint32(0, 0x06054b50, true);
  ev.setUint16(8, Math.min(count, 0xffff), true);
  ev.setUint16(10, Math.min(count, 0xffff), true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);
  const out = new Uint8Array(offset + cdSize + 22);
  let at = 0;
  for (const part of [...locals, ...centrals, end]) {
    out.set(part, at);
    at += part.byteLength;
  }
  return out;
}
