/**
 * The zip-level checks of a task package, shared by the check at submit and
 * the unpack on nodes: the limits, every entry's name, kind, depth and size,
 * declared sizes against what each entry inflates to (zip bombs), and where
 * symlinks lead. `core/package.ts` adds task.toml and the inputs on top.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { crc32, inflateRawSync } from "node:zlib";
import { tooLarge, ValidationError } from "./errors.ts";
import { normalizeRelative } from "./task_toml_values.ts";
import { countEntries, entryData, readSmallEntry, type ZipSource } from "./zip_source.ts";

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

/** One entry of a package, after its name was checked. */
export interface PlannedEntry {
  entry: zip.Entry;
  /** Path inside the task root, normalized. */
  path: string;
  kind: "file" | "dir" | "symlink";
  mode: number;
}

/** Throws the {@linkcode ValidationError} that refuses a package, saying why (`code` names the rule). */
export function invalid(message: string, code = "invalid_package"): never {
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
 * Reads the zip's directory and checks every entry's name, kind and size.
 * Strips one top-level folder when the zip holds the task root as a folder.
 */
export async function planEntries(source: ZipSource, limits: PackageLimits): Promise<PlannedEntry[]> {
  if (source.size > limits.maxPackageBytes) {
    throw tooLarge("accept package", source.size, limits.maxPackageBytes, "package_too_large");
  }
  const tooMany = (n: number | string): never =>
    invalid(`it has ${n} entries, more than the limit of ${limits.maxEntries}`, "too_many_entries");
  const counted = await countEntries(source, limits.maxEntries);
  if (counted !== null && counted > limits.maxEntries) tooMany(counted);
  let entries: zip.Entry[];
  let overflow = false;
  try {
    const reader = new zip.ZipReader(source.reader());
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
  if (total > 1024 * 1024 && total / Math.max(1, source.size) > limits.maxRatio) {
    invalid(
      `it unpacks to ${total} bytes from ${source.size} (ratio ${
        Math.round(total / source.size)
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
export async function streamEntry(
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

/** Reads a whole entry (at most `limit` bytes), refusing one that lies about its size. */
export async function readEntry(source: ZipSource, entry: zip.Entry, limit: number): Promise<Uint8Array> {
  const small = await readSmallEntry(source, entry, limit);
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
export async function checkDeclaredSizes(source: ZipSource, planned: PlannedEntry[]): Promise<void> {
  for (const p of planned) {
    if (p.kind !== "file" || p.path === "task.toml") continue;
    const { entry } = p;
    // Small entries inflate in one call capped one byte past what they declare; the rest stream through zip.js.
    if (entry.compressedSize <= 1024 * 1024 && entry.uncompressedSize <= 16 * 1024 * 1024) {
      const verdict = await inflatedSize(source, entry);
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
async function inflatedSize(source: ZipSource, entry: zip.Entry): Promise<"ok" | "over" | "unsure"> {
  const located = await entryData(source, entry);
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
export function linkTarget(path: string, target: string): string | null {
  if (target.startsWith("/")) return null;
  const dir = path.includes("/") ? path.slice(0, path.lastIndexOf("/")) : "";
  return normalizeRelative(dir ? `${dir}/${target}` : target);
}

/** Reads every symlink's target (refusing one that leaves the root); returns where a path leads through them. */
export async function linkResolver(zipped: ZipSource, planned: PlannedEntry[]): Promise<(path: string) => string> {
  const links = new Map<string, string>();
  for (const p of planned) {
    if (p.kind !== "symlink") continue;
    const target = new TextDecoder().decode(await readEntry(zipped, p.entry, 4096));
    const resolved = linkTarget(p.path, target);
    if (resolved === null) {
      invalid(`entry '${p.entry.filename}' is a symlink to '${target}', outside the task root`, "symlink_escapes_root");
    }
    links.set(p.path, resolved);
  }
  return (path: string) => {
    for (let i = 0; i < 40 && links.has(path); i++) path = links.get(path)!;
    return path;
  };
}
