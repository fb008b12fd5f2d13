/**
 * Task packages: a zip of a task root holding `task.toml`. Validated before
 * anything is stored (structure, sizes, names, links, task.toml), unpacked
 * on nodes the same careful way.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { sha256Hex } from "./ids.ts";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { crc32, inflateRawSync } from "node:zlib";
import { tooLarge, ValidationError } from "./errors.ts";
import { type InputRows, MAX_INPUTS_BYTES, parseInputs } from "./inputs.ts";
import type { Digest, InputsSpec, TaskSpec } from "./schema.ts";
import { MAX_INSTANCES, normalizeRelative, parseTaskToml } from "./task_toml.ts";
import { bytesSource, countEntries, entryData, fileSource, readSmallEntry, type ZipSource } from "./zip_source.ts";

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
 * Reads the zip's directory and checks every entry's name, kind and size.
 * Strips one top-level folder when the zip holds the task root as a folder.
 */
async function plan(source: ZipSource, limits: PackageLimits): Promise<PlannedEntry[]> {
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

async function readEntry(source: ZipSource, entry: zip.Entry, limit: number): Promise<Uint8Array> {
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
async function checkDeclaredSizes(source: ZipSource, planned: PlannedEntry[]): Promise<void> {
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
 * @param overrides A TOML fragment laid over task.toml before its checks (multipart field `overrides`).
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
  overrides?: string,
): Promise<CheckedPackage> {
  if (bytes.byteLength > limits.maxPackageBytes) {
    throw tooLarge("accept package", bytes.byteLength, limits.maxPackageBytes, "package_too_large");
  }
  return await checkRemembered(bytesSource(bytes), await sha256Digest(bytes), defaultName, limits, overrides);
}

/**
 * {@linkcode checkPackage} of a zip in a file, read in place (a large
 * upload is spooled to disk, never held whole in memory).
 *
 * @param digest The file's digest when the caller computed it on the way in; else it is read once for it.
 * @param overrides As for {@linkcode checkPackage}.
 */
export async function checkPackageFile(
  path: string,
  defaultName = "task",
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
  digest?: Digest,
  overrides?: string,
): Promise<CheckedPackage> {
  using source = await fileSource(path);
  if (source.size > limits.maxPackageBytes) {
    throw tooLarge("accept package", source.size, limits.maxPackageBytes, "package_too_large");
  }
  return await checkRemembered(source, digest ?? await sha256File(path), defaultName, limits, overrides);
}

/** The `sha256-<hex>` digest of a file, read as a stream. */
export async function sha256File(path: string): Promise<Digest> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  for await (const chunk of file.readable.values({ preventCancel: true })) hash.update(chunk);
  return `sha256-${hash.digest("hex")}`;
}

async function checkRemembered(
  source: ZipSource,
  digest: Digest,
  defaultName: string,
  limits: PackageLimits,
  overrides: string | undefined,
): Promise<CheckedPackage> {
  let memo = checked.get(limits);
  if (!memo) checked.set(limits, memo = new Map());
  const key = `${digest}\0${defaultName}\0${overrides ?? ""}`;
  const hit = memo.get(key);
  if (hit) return structuredClone(hit);
  const result = await checkPackageSource(source, defaultName, limits, digest, overrides);
  if (memo.size >= 64) memo.delete(memo.keys().next().value!);
  memo.set(key, result);
  return structuredClone(result);
}

/** Packages that passed, per limits object, by digest and default name (see {@linkcode checkPackage}). */
const checked = new WeakMap<PackageLimits, Map<string, CheckedPackage>>();

/** Reads every symlink's target (refusing one that leaves the root); returns where a path leads through them. */
async function linkResolver(zipped: ZipSource, planned: PlannedEntry[]): Promise<(path: string) => string> {
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

async function checkPackageSource(
  zipped: ZipSource,
  defaultName: string,
  limits: PackageLimits,
  digest: Digest,
  overrides: string | undefined,
): Promise<CheckedPackage> {
  const planned = await plan(zipped, limits);
  const byPath = new Map(planned.map((p) => [p.path, p]));
  const resolve = await linkResolver(zipped, planned);
  await checkDeclaredSizes(zipped, planned);
  const tomlEntry = byPath.get("task.toml")!;
  if (tomlEntry.kind !== "file") invalid("task.toml is not a regular file", "missing_task_toml");
  const tomlBytes = await readEntry(zipped, tomlEntry.entry, 64 * 1024);
  let source: string;
  try {
    source = new TextDecoder("utf-8", { fatal: true }).decode(tomlBytes);
  } catch {
    invalid("task.toml is not UTF-8 text", "invalid_task_toml");
  }
  const spec = parseTaskToml(source, defaultName, overrides);
  const hasDir = (path: string) =>
    path === "." || byPath.get(path)?.kind === "dir" || planned.some((p) => p.path.startsWith(path + "/"));
  for (const [key, path] of [["entrypoint", spec.entrypoint], ["finalize.entrypoint", spec.finalize?.entrypoint]]) {
    if (path === undefined || path === null) continue;
    const entry = byPath.get(resolve(path));
    if (!entry || entry.kind !== "file") {
      // A bare program name ("python3") most likely means a program on the node's PATH.
      const hint = path.includes("/") ? "" : `; to run a program the node has, write command = "${path} …" instead`;
      throw new ValidationError(`task.toml: ${key} '${path}' is not a file in the package${hint}`, {
        code: "missing_entrypoint",
      });
    }
  }
  if (spec.inputs) {
    const rows = await readInputsEntry(zipped, byPath, resolve, spec.inputs);
    spec.instances = rows.rows.length;
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
    packageBytes: zipped.size,
    entries: planned.length,
    unpackedBytes: planned.reduce((n, p) => n + p.entry.uncompressedSize, 0),
    taskToml: source,
  };
}

/** Reads and parses the inputs file of a package (see `core/inputs.ts`), checked as at submit. */
async function readInputsEntry(
  zipped: ZipSource,
  byPath: Map<string, PlannedEntry>,
  resolve: (path: string) => string,
  inputs: InputsSpec,
): Promise<InputRows> {
  const entry = byPath.get(resolve(inputs.path));
  if (!entry || entry.kind !== "file") {
    throw new ValidationError(`task.toml: inputs '${inputs.path}' is not a file in the package`, {
      code: "missing_inputs",
    });
  }
  if (entry.entry.uncompressedSize > MAX_INPUTS_BYTES) {
    throw new ValidationError(
      `task.toml: inputs '${inputs.path}' is ${entry.entry.uncompressedSize} bytes, more than the limit of ${MAX_INPUTS_BYTES}`,
      { code: "invalid_inputs" },
    );
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(await readEntry(zipped, entry.entry, MAX_INPUTS_BYTES));
  } catch (e) {
    if (e instanceof ValidationError) throw e;
    throw new ValidationError(`task.toml: inputs '${inputs.path}' is not UTF-8 text`, { code: "invalid_inputs" });
  }
  return parseInputs(text, inputs, MAX_INSTANCES);
}

/**
 * Reads the rows of a checked package's `[task] inputs` file from its zip
 * (the gateway shows an instance's row; nodes read theirs from the unpacked
 * copy, see {@linkcode readInputsFile}).
 */
export async function readPackageInputs(
  bytes: Uint8Array,
  inputs: InputsSpec,
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
): Promise<InputRows> {
  const zipped = bytesSource(bytes);
  const planned = await plan(zipped, limits);
  const byPath = new Map(planned.map((p) => [p.path, p]));
  return await readInputsEntry(zipped, byPath, await linkResolver(zipped, planned), inputs);
}

/** Reads the rows of `[task] inputs` from an unpacked task root. */
export async function readInputsFile(root: string, inputs: InputsSpec): Promise<InputRows> {
  return parseInputs(await Deno.readTextFile(join(root, inputs.path)), inputs, MAX_INSTANCES);
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
  await unpackSource(bytesSource(bytes), dir, entrypoint, limits);
}

/** {@linkcode unpackPackage} of a zip in a file, read in place. */
export async function unpackPackageFile(
  path: string,
  dir: string,
  entrypoint: string | null,
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
): Promise<void> {
  using source = await fileSource(path);
  await unpackSource(source, dir, entrypoint, limits);
}

async function unpackSource(
  source: ZipSource,
  dir: string,
  entrypoint: string | null,
  limits: PackageLimits,
): Promise<void> {
  const planned = await plan(source, limits);
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
      const link = new TextDecoder().decode(await readEntry(source, p.entry, 4096));
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
