/**
 * Task packages: a zip of a task root holding `task.toml`. Validated before
 * anything is stored (structure, sizes, names, links, task.toml), unpacked
 * on nodes the same careful way.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { sha256Hex } from "./ids.ts";
import { dirname, join } from "node:path";
import { crc32, inflateRawSync } from "node:zlib";
import { tooLarge, ValidationError } from "./errors.ts";
import type { Digest, TaskSpec } from "./schema.ts";
import { normalizeRelative, parseTaskToml } from "./task_toml.ts";

zip.configure({ useWebWorkers: false });

/** Size and count limits for packages. */
export interface PackageLimits {
  /** Largest zip accepted, in bytes. @default {1 GiB} */
  maxPackageBytes: number;
  /** Largest total of unpacked sizes, in bytes. @default {4 GiB} */
  maxUnpackedBytes: number;
  /** Most entries in one package. @default {100000} */
  maxEntries: number;
  /** Highest ratio of unpacked to packed size (zip bombs). @default {200} */
  maxRatio: number;
  /** Deepest folder nesting. @default {64} */
  maxDepth: number;
}

/** The default {@linkcode PackageLimits}. */
export const DEFAULT_PACKAGE_LIMITS: PackageLimits = {
  maxPackageBytes: 2 ** 30,
  maxUnpackedBytes: 4 * 2 ** 30,
  maxEntries: 100_000,
  maxRatio: 200,
  maxDepth: 64,
};

/** A package that passed every check. */
export interface CheckedPackage {
  /** `sha256-<hex>` of the zip bytes. */
  digest: Digest;
  /** The task as task.toml describes it. */
  spec: TaskSpec;
  /** Size of the zip. */
  packageBytes: number;
  /** Number of files and folders. */
  entries: number;
  /** Total unpacked size. */
  unpackedBytes: number;
  /** The text of task.toml (to point at its lines in later checks). */
  taskToml: string;
}

/** One entry of a package, after its name was checked. */
interface PlannedEntry {
  entry: zip.Entry;
  /** Path inside the task root, normalized. */
  path: string;
  kind: "file" | "dir" | "symlink";
  mode: number;
}

/** Computes the `sha256-<hex>` digest of bytes. */
export async function sha256Digest(bytes: Uint8Array): Promise<Digest> {
  // Small: node:crypto on the calling thread, no round trip to a thread pool (0.004 against 0.03 ms for a small
  // zip). Large: crypto.subtle, off the event loop (a 1 GiB package would hold it for seconds).
  if (bytes.byteLength <= 1024 * 1024) return `sha256-${sha256Hex(bytes)}`;
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return `sha256-${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function invalid(message: string, code = "invalid_package"): never {
  throw new ValidationError(`Cannot accept package as ${message}`, { code });
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;
const S_IFREG = 0o100000;
const S_IFDIR = 0o040000;
/** Zip compression methods every node can read: stored, deflate. */
const METHODS = new Set([0, 8]);
/** Longest name of one path component (Linux NAME_MAX), in bytes. */
const MAX_NAME_BYTES = 255;
/** Longest entry path, in bytes (leaves room for the node's work dir within PATH_MAX). */
const MAX_PATH_BYTES = 1024;

/**
 * Counts the central directory's entries straight from the zip's bytes,
 * stopping as soon as there are more than `max`: a zip of millions of tiny
 * entries is refused after reading `max` fixed-size headers, before any
 * entry object is made. Returns null when the directory cannot be found
 * this simply (the zip reader then decides, with its own entry guard).
 */
export function countEntries(bytes: Uint8Array, max: number): number | null {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (at: number) => view.getUint32(at, true);
  const u16 = (at: number) => view.getUint16(at, true);
  let eocd = -1;
  for (let i = bytes.byteLength - 22; i >= Math.max(0, bytes.byteLength - 22 - 65535); i--) {
    if (u32(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) return null;
  let offset = u32(eocd + 16);
  let declared = u16(eocd + 10);
  if ((offset === 0xffffffff || declared === 0xffff) && eocd >= 20 && u32(eocd - 20) === 0x07064b50) {
    const z64 = Number(view.getBigUint64(eocd - 20 + 8, true));
    if (z64 + 56 > bytes.byteLength || u32(z64) !== 0x06064b50) return null;
    offset = Number(view.getBigUint64(z64 + 48, true));
    declared = Number(view.getBigUint64(z64 + 32, true));
  }
  if (declared > max) return declared;
  let count = 0;
  let at = offset;
  while (at + 46 <= bytes.byteLength && u32(at) === 0x02014b50) {
    if (++count > max) return count;
    at += 46 + u16(at + 28) + u16(at + 30) + u16(at + 32);
  }
  return count === 0 && declared > 0 ? null : count;
}

/**
 * Reads the zip's directory and checks every entry's name, kind and size.
 * Strips one top-level folder when the zip holds the task root as a folder.
 */
async function plan(bytes: Uint8Array, limits: PackageLimits): Promise<PlannedEntry[]> {
  if (bytes.byteLength > limits.maxPackageBytes) {
    throw tooLarge("accept package", bytes.byteLength, limits.maxPackageBytes, "package_too_large");
  }
  const tooMany = (n: number | string): never =>
    invalid(`it has ${n} entries, more than the limit of ${limits.maxEntries}`, "too_many_entries");
  const counted = countEntries(bytes, limits.maxEntries);
  if (counted !== null && counted > limits.maxEntries) tooMany(counted);
  let entries: zip.Entry[];
  let overflow = false;
  try {
    const reader = new zip.ZipReader(new zip.Uint8ArrayReader(bytes));
    // Names are checked below, so that the message names the entry and the rule it breaks.
    entries = await reader.getEntries({
      filenameValidation: "tolerant",
      onprogress: (index) => {
        if (index > limits.maxEntries) {
          overflow = true;
          throw new Error("too many entries");
        }
        return undefined;
      },
    });
    await reader.close();
  } catch (e) {
    if (overflow) tooMany(`more than ${limits.maxEntries}`);
    invalid(`it is not a readable zip file (${(e as Error).message})`, "broken_zip");
  }
  if (entries.length === 0) invalid("the zip is empty", "missing_task_toml");
  if (entries.length > limits.maxEntries) tooMany(entries.length);
  const planned: PlannedEntry[] = [];
  let total = 0;
  for (const entry of entries) {
    const raw = entry.filename;
    if (!entry.filenameUTF8 && entry.rawFilename.some((b) => b >= 0x80)) {
      const shown = Array.from(
        entry.rawFilename,
        (b) => b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, "0")}`,
      ).join("");
      invalid(`entry '${shown}' has a name that is not UTF-8`, "bad_entry_name");
    }
    if (raw.includes("\0") || raw.includes("\\")) {
      invalid(`entry '${raw}' has a NUL or backslash in its name`, "bad_entry_name");
    }
    // C0, DEL and C1 (Unicode's Cc): a newline or an escape in a name forges lines of logs and listings.
    const control = /\p{Cc}/u.exec(raw);
    if (control) {
      const u = (ch: string) => `U+${ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0")}`;
      invalid(
        `entry '${raw.replace(/\p{Cc}/gu, (ch) => `\\u${u(ch).slice(2)}`)}' has a control character (${
          u(control[0])
        }) in its name: names may not hold C0, DEL or C1 controls`,
        "bad_entry_name",
      );
    }
    const rawBytes = new TextEncoder().encode(raw);
    if (rawBytes.byteLength > MAX_PATH_BYTES) {
      invalid(
        `entry '${raw.slice(0, 64)}…' has a name of ${rawBytes.byteLength} bytes, more than ${MAX_PATH_BYTES}`,
        "bad_entry_name",
      );
    }
    const long = raw.split("/").find((part) => new TextEncoder().encode(part).byteLength > MAX_NAME_BYTES);
    if (long) {
      invalid(
        `entry '${raw.slice(0, 64)}…' has a path component longer than ${MAX_NAME_BYTES} bytes`,
        "bad_entry_name",
      );
    }
    if (raw.startsWith("/") || /^[A-Za-z]:/.test(raw)) {
      invalid(`entry '${raw}' is an absolute path`, "absolute_path");
    }
    const path = normalizeRelative(raw);
    if (path === null || raw.split("/").includes("..")) {
      invalid(`entry '${raw}' escapes the task root`, "path_escapes_root");
    }
    if (path.split("/").length > limits.maxDepth) {
      invalid(`entry '${raw}' is nested deeper than ${limits.maxDepth} folders`, "too_deep");
    }
    const unixMode = entry.unixMode ?? 0;
    const type = unixMode & S_IFMT;
    if (type !== 0 && type !== S_IFREG && type !== S_IFDIR && type !== S_IFLNK) {
      invalid(
        `entry '${raw}' is a device, FIFO or socket (mode 0${
          type.toString(8)
        }): only files, folders and symlinks are unpacked`,
        "special_file",
      );
    }
    const kind = entry.directory ? "dir" : type === S_IFLNK || entry.symlink ? "symlink" : "file";
    if (entry.encrypted) invalid(`entry '${raw}' is encrypted`, "encrypted_entry");
    const method = (entry as { compressionMethod?: number }).compressionMethod ?? 0;
    if (kind !== "dir" && !METHODS.has(method)) {
      invalid(
        `entry '${raw}' uses compression method ${method}: only stored (0) and deflate (8) are read`,
        "unsupported_compression",
      );
    }
    if (entry.uncompressedSize > limits.maxUnpackedBytes) {
      invalid(
        `entry '${raw}' unpacks to ${entry.uncompressedSize} bytes, more than the limit of ${limits.maxUnpackedBytes}`,
        "too_large_unpacked",
      );
    }
    total += entry.uncompressedSize;
    planned.push({ entry, path, kind, mode: unixMode & 0o777 });
  }
  if (total > limits.maxUnpackedBytes) {
    invalid(`it unpacks to ${total} bytes, more than the limit of ${limits.maxUnpackedBytes}`, "too_large_unpacked");
  }
  if (total > 1024 * 1024 && total / Math.max(1, bytes.byteLength) > limits.maxRatio) {
    invalid(
      `it unpacks to ${total} bytes from ${bytes.byteLength} (ratio ${
        Math.round(total / bytes.byteLength)
      }, limit ${limits.maxRatio}): a zip bomb?`,
      "zip_bomb",
    );
  }
  // A zip of the folder itself ("hello/task.toml"): strip that one folder.
  if (!planned.some((p) => p.path === "task.toml")) {
    const tops = new Set(planned.map((p) => p.path.split("/")[0]));
    const [top] = tops;
    if (tops.size === 1 && planned.some((p) => p.path === `${top}/task.toml`)) {
      for (const p of planned) p.path = p.path === top ? "." : p.path.slice(top.length + 1);
    } else {
      invalid("it has no task.toml at its root", "missing_task_toml");
    }
  }
  const seen = new Map<string, PlannedEntry>();
  for (const p of planned) {
    if (p.path === ".") continue;
    const before = seen.get(p.path);
    if (before && !(before.kind === "dir" && p.kind === "dir")) {
      invalid(`entry '${p.entry.filename}' appears twice`, "duplicate_entry");
    }
    seen.set(p.path, p);
  }
  // Nothing may lie below a symlink: writing through one would land wherever it points,
  // and a link's target would be resolved from somewhere other than where it seems to sit.
  for (const p of planned) {
    const parts = p.path.split("/");
    for (let i = 1; i < parts.length; i++) {
      const above = seen.get(parts.slice(0, i).join("/"));
      if (above?.kind === "symlink") {
        invalid(`entry '${p.entry.filename}' lies below symlink '${above.entry.filename}'`, "path_through_symlink");
      }
    }
  }
  return planned.filter((p) => p.path !== ".");
}

/**
 * Streams an entry's data to `write`, refusing more bytes than it declares
 * (a zip bomb may lie about its sizes) or than `limit`.
 */
async function streamEntry(
  entry: zip.Entry,
  limit: number,
  write: (chunk: Uint8Array) => void | Promise<void>,
): Promise<number> {
  if (entry.uncompressedSize > limit) {
    invalid(`entry '${entry.filename}' is ${entry.uncompressedSize} bytes, more than the limit of ${limit}`);
  }
  let size = 0;
  let lied = false;
  const sink = new WritableStream<Uint8Array>({
    async write(chunk) {
      size += chunk.byteLength;
      if (size > entry.uncompressedSize) {
        lied = true;
        throw new Error("more data than declared");
      }
      await write(chunk);
    },
  });
  try {
    await (entry as zip.FileEntry).getData(sink, { checkSignature: true });
  } catch (e) {
    if (lied || /uncompressed size/i.test((e as Error).message)) lies(entry);
    invalid(`entry '${entry.filename}' cannot be read (${(e as Error).message})`, "broken_zip");
  }
  if (size !== entry.uncompressedSize) {
    invalid(
      `entry '${entry.filename}' unpacks to ${size} bytes, not the ${entry.uncompressedSize} it declares`,
      "broken_zip",
    );
  }
  return size;
}

/** Where the central directory starts, from the end record; null when there is none plain to read (zip64, comments). */
function centralDirectoryOffset(bytes: Uint8Array, view: DataView): number | null {
  const end = bytes.byteLength - 22;
  if (end < 0 || view.getUint32(end, true) !== 0x06054b50) return null;
  const offset = view.getUint32(end + 16, true);
  return offset === 0xffffffff ? null : offset;
}

/**
 * Reads a small stored or deflated entry straight from the zip's bytes (a
 * tenth of the time zip.js's streams take for a task.toml); null when the
 * entry is anything else or does not add up, for the careful path to read
 * and word.
 */
function readSmallEntry(bytes: Uint8Array, entry: zip.Entry, limit: number): Uint8Array | null {
  if (entry.uncompressedSize > limit || entry.compressedSize > 1024 * 1024) return null;
  const located = entryData(bytes, entry);
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
 * Finds a stored or deflated entry's data in the zip's bytes; null when the
 * entry is anything else or its headers do not agree, for the careful path
 * to read and word.
 */
function entryData(bytes: Uint8Array, entry: zip.Entry): { raw: Uint8Array; method: number } | null {
  const method = entry.compressionMethod;
  if (entry.encrypted || entry.crc32 === undefined || (method !== 0 && method !== 8)) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const at = entry.offset;
  if (at + 30 > bytes.byteLength || view.getUint32(at, true) !== 0x04034b50) return null;
  // The local header must say what the central directory says (zip.js refuses an "ambiguous archive" otherwise):
  // same method, and, without a data descriptor (flag bit 3), the same CRC and sizes.
  const flags = view.getUint16(at + 6, true);
  if (view.getUint16(at + 8, true) !== method) return null;
  if (flags & 0x08) return null;
  if (
    view.getUint32(at + 14, true) !== entry.crc32 || view.getUint32(at + 18, true) !== entry.compressedSize ||
    view.getUint32(at + 22, true) !== entry.uncompressedSize
  ) return null;
  const start = at + 30 + view.getUint16(at + 26, true) + view.getUint16(at + 28, true);
  // Its data must end before the central directory starts.
  const directory = centralDirectoryOffset(bytes, view);
  if (directory === null || start + entry.compressedSize > directory) return null;
  return { raw: bytes.subarray(start, start + entry.compressedSize), method };
}

async function readEntry(bytes: Uint8Array, entry: zip.Entry, limit: number): Promise<Uint8Array> {
  const small = readSmallEntry(bytes, entry, limit);
  if (small) return small;
  const chunks: Uint8Array[] = [];
  const size = await streamEntry(entry, limit, (c) => void chunks.push(c.slice()));
  const out = new Uint8Array(size);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.byteLength;
  }
  return out;
}

/**
 * Inflates every file entry once, keeping nothing, and refuses one that
 * inflates past the size its headers declare as soon as it does (a zip bomb
 * that lies about its size), or to fewer bytes, or with another CRC: what
 * the node would find only when unpacking, after the task was accepted.
 */
async function checkDeclaredSizes(bytes: Uint8Array, planned: PlannedEntry[]): Promise<void> {
  for (const p of planned) {
    if (p.kind !== "file" || p.path === "task.toml") continue;
    const { entry } = p;
    // Small entries inflate in one call capped one byte past what they declare; the rest stream through zip.js.
    if (entry.compressedSize <= 1024 * 1024 && entry.uncompressedSize <= 16 * 1024 * 1024) {
      const verdict = inflatedSize(bytes, entry);
      if (verdict === "over") lies(entry);
      if (verdict === "ok") continue;
    }
    await streamEntry(entry, entry.uncompressedSize, () => {});
  }
}

function lies(entry: zip.Entry): never {
  invalid(
    `entry '${entry.filename}' unpacks to more than the ${entry.uncompressedSize} bytes it declares: a zip bomb?`,
    "zip_bomb",
  );
}

/**
 * Inflates a small entry straight from the zip's bytes, stopping one byte
 * past its declared size: "ok" when size and CRC match, "over" when it
 * inflates past the size, "unsure" when the careful path must say why not.
 *
 * @throws {ValidationError} When it inflates to fewer bytes than it declares.
 */
function inflatedSize(bytes: Uint8Array, entry: zip.Entry): "ok" | "over" | "unsure" {
  const located = entryData(bytes, entry);
  if (!located) return "unsure";
  const { raw, method } = located;
  if (method === 0) return raw.byteLength === entry.uncompressedSize ? "ok" : "unsure";
  let out: Uint8Array;
  try {
    out = new Uint8Array(inflateRawSync(raw, { maxOutputLength: entry.uncompressedSize + 1 }));
  } catch (e) {
    return (e as { code?: string }).code === "ERR_BUFFER_TOO_LARGE" ? "over" : "unsure";
  }
  if (out.byteLength > entry.uncompressedSize) return "over";
  if (out.byteLength < entry.uncompressedSize) {
    invalid(
      `entry '${entry.filename}' unpacks to ${out.byteLength} bytes, not the ${entry.uncompressedSize} it declares`,
      "broken_zip",
    );
  }
  return (crc32(out) >>> 0) === entry.crc32 ? "ok" : "unsure";
}

/** Where a symlink at `path` pointing to `target` lands, or null when outside the root. */
function linkTarget(path: string, target: string): string | null {
  if (target.startsWith("/")) return null;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  return normalizeRelative(dir ? `${dir}/${target}` : target);
}

/**
 * Checks a package completely: zip structure, entry names and sizes, links,
 * and task.toml (including that the entrypoint and workdir exist inside).
 *
 * @param bytes The zip.
 * @param defaultName Task name when task.toml gives none.
 * @throws {ValidationError} Naming the entry or the task.toml key at fault.
 * The same bytes under the same name and limits are checked once: the
 * result of the last 64 packages that passed is kept by digest (resubmitting
 * a package is the common case, and its check a pure function of those).
 *
 * @throws {TooLargeError} When the zip is larger than `limits.maxPackageBytes`.
 */
export async function checkPackage(
  bytes: Uint8Array,
  defaultName = "task",
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
): Promise<CheckedPackage> {
  if (bytes.byteLength > limits.maxPackageBytes) {
    throw tooLarge("accept package", bytes.byteLength, limits.maxPackageBytes, "package_too_large");
  }
  const digest = await sha256Digest(bytes);
  let memo = checked.get(limits);
  if (!memo) checked.set(limits, memo = new Map());
  const key = `${digest}\0${defaultName}`;
  const hit = memo.get(key);
  if (hit) return structuredClone(hit);
  const result = await checkPackageBytes(bytes, defaultName, limits, digest);
  if (memo.size >= 64) memo.delete(memo.keys().next().value!);
  memo.set(key, result);
  return structuredClone(result);
}

/** Packages that passed, per limits object, by digest and default name (see {@linkcode checkPackage}). */
const checked = new WeakMap<PackageLimits, Map<string, CheckedPackage>>();

async function checkPackageBytes(
  bytes: Uint8Array,
  defaultName: string,
  limits: PackageLimits,
  digest: Digest,
): Promise<CheckedPackage> {
  const planned = await plan(bytes, limits);
  const byPath = new Map(planned.map((p) => [p.path, p]));
  const links = new Map<string, string>();
  for (const p of planned) {
    if (p.kind !== "symlink") continue;
    const target = new TextDecoder().decode(await readEntry(bytes, p.entry, 4096));
    const resolved = linkTarget(p.path, target);
    if (resolved === null) {
      invalid(`entry '${p.entry.filename}' is a symlink to '${target}', outside the task root`, "symlink_escapes_root");
    }
    links.set(p.path, resolved);
  }
  await checkDeclaredSizes(bytes, planned);
  const tomlEntry = byPath.get("task.toml")!;
  if (tomlEntry.kind !== "file") invalid("task.toml is not a regular file", "missing_task_toml");
  const tomlBytes = await readEntry(bytes, tomlEntry.entry, 64 * 1024);
  let source: string;
  try {
    source = new TextDecoder("utf-8", { fatal: true }).decode(tomlBytes);
  } catch {
    invalid("task.toml is not UTF-8 text", "invalid_task_toml");
  }
  const spec = parseTaskToml(source, defaultName);
  const resolve = (path: string) => {
    for (let i = 0; i < 40 && links.has(path); i++) path = links.get(path)!;
    return path;
  };
  const hasDir = (path: string) =>
    path === "." || byPath.get(path)?.kind === "dir" || planned.some((p) => p.path.startsWith(path + "/"));
  for (const [key, path] of [["entrypoint", spec.entrypoint], ["finalize.entrypoint", spec.finalize?.entrypoint]]) {
    if (path === undefined) continue;
    const entry = byPath.get(resolve(path));
    if (!entry || entry.kind !== "file") {
      throw new ValidationError(`task.toml: ${key} '${path}' is not a file in the package`, {
        code: "missing_entrypoint",
      });
    }
  }
  if (!hasDir(resolve(spec.workdir))) {
    throw new ValidationError(
      `task.toml: workdir '${spec.workdir}' is not a folder in the package`,
      { code: "missing_workdir" },
    );
  }
  return {
    digest,
    spec,
    packageBytes: bytes.byteLength,
    entries: planned.length,
    unpackedBytes: planned.reduce((n, p) => n + p.entry.uncompressedSize, 0),
    taskToml: source,
  };
}

/**
 * Unpacks a package into `dir` (which must not exist yet or be empty),
 * re-checking every entry: nothing is written outside `dir`. The entrypoint
 * is made executable.
 *
 * @throws {ValidationError} When an entry is unsafe or the zip is broken.
 */
export async function unpackPackage(
  bytes: Uint8Array,
  dir: string,
  entrypoint: string | null,
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
): Promise<void> {
  const planned = await plan(bytes, limits);
  await Deno.mkdir(dir, { recursive: true });
  let written = 0;
  for (const p of planned) {
    const target = join(dir, p.path);
    if (p.kind === "dir") {
      await Deno.mkdir(target, { recursive: true });
      continue;
    }
    await Deno.mkdir(dirname(target), { recursive: true });
    if (p.kind === "symlink") {
      const link = new TextDecoder().decode(await readEntry(bytes, p.entry, 4096));
      if (linkTarget(p.path, link) === null) {
        invalid(`entry '${p.entry.filename}' is a symlink to '${link}', outside the task root`, "symlink_escapes_root");
      }
      await Deno.symlink(link, target);
      continue;
    }
    const executable = (p.mode & 0o111) !== 0 || p.entry.executable || p.path === entrypoint;
    // createNew: never opens an existing path, so never writes through a link planted before.
    const file = await Deno.open(target, { write: true, createNew: true, mode: executable ? 0o755 : 0o644 });
    try {
      written += await streamEntry(p.entry, limits.maxUnpackedBytes - written, async (chunk) => {
        for (let at = 0; at < chunk.byteLength;) at += await file.write(chunk.subarray(at));
      });
    } finally {
      file.close();
    }
    if (executable) await Deno.chmod(target, 0o755);
  }
}

/**
 * Zips a folder (task root) into bytes, keeping executable bits and in-root
 * symlinks, leaving out `.git` and the names `ignore` says to.
 */
export async function zipFolder(
  root: string,
  ignore: (relPath: string, isDir: boolean) => boolean = () => false,
): Promise<Uint8Array> {
  const writer = new zip.ZipWriter(new zip.Uint8ArrayWriter(), { level: 6 });
  async function walk(rel: string) {
    const abs = rel ? join(root, rel) : root;
    const items = [];
    for await (const item of Deno.readDir(abs)) items.push(item);
    items.sort((a, b) => a.name < b.name ? -1 : 1);
    for (const item of items) {
      const path = rel ? `${rel}/${item.name}` : item.name;
      if (item.name === ".git" || ignore(path, item.isDirectory)) continue;
      const full = join(root, path);
      if (item.isSymlink) {
        const target = await Deno.readLink(full);
        await writer.add(path, new zip.TextReader(target), { unixMode: 0o120777 });
      } else if (item.isDirectory) {
        await writer.add(path + "/", undefined, { directory: true });
        await walk(path);
      } else if (item.isFile) {
        const stat = await Deno.stat(full);
        const mode = (stat.mode ?? 0o644) & 0o777;
        await writer.add(path, new zip.Uint8ArrayReader(await Deno.readFile(full)), {
          unixMode: 0o100000 | mode,
        });
      }
    }
  }
  await walk("");
  return await writer.close();
}
