/**
 * Task packages: a zip of a task root holding `task.toml`. Validated before
 * anything is stored (structure, sizes, names, links, task.toml), unpacked
 * on nodes the same careful way.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { dirname, join } from "node:path";
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
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return `sha256-${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

function invalid(message: string, code = "invalid_package"): never {
  throw new ValidationError(`Cannot accept package as ${message}`, { code });
}

const S_IFMT = 0o170000;
const S_IFLNK = 0o120000;

/**
 * Reads the zip's directory and checks every entry's name, kind and size.
 * Strips one top-level folder when the zip holds the task root as a folder.
 */
async function plan(bytes: Uint8Array, limits: PackageLimits): Promise<PlannedEntry[]> {
  if (bytes.byteLength > limits.maxPackageBytes) {
    throw tooLarge("accept package", bytes.byteLength, limits.maxPackageBytes, "package_too_large");
  }
  let entries: zip.Entry[];
  try {
    const reader = new zip.ZipReader(new zip.Uint8ArrayReader(bytes));
    // Names are checked below, so that the message names the entry and the rule it breaks.
    entries = await reader.getEntries({ filenameValidation: "tolerant" });
    await reader.close();
  } catch (e) {
    invalid(`it is not a readable zip file (${(e as Error).message})`, "broken_zip");
  }
  if (entries.length === 0) invalid("the zip is empty", "missing_task_toml");
  if (entries.length > limits.maxEntries) {
    invalid(`it has ${entries.length} entries, more than the limit of ${limits.maxEntries}`, "too_many_entries");
  }
  const planned: PlannedEntry[] = [];
  let total = 0;
  for (const entry of entries) {
    const raw = entry.filename;
    if (!entry.filenameUTF8 && entry.rawFilename.some((b) => b >= 0x80)) {
      invalid(`entry '${raw}' has a name that is not UTF-8`, "bad_entry_name");
    }
    if (raw.includes("\0") || raw.includes("\\")) {
      invalid(`entry '${raw}' has a NUL or backslash in its name`, "bad_entry_name");
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
    const kind = entry.directory ? "dir" : (unixMode & S_IFMT) === S_IFLNK || entry.symlink ? "symlink" : "file";
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
  return planned.filter((p) => p.path !== ".");
}

async function readEntry(entry: zip.Entry, limit: number): Promise<Uint8Array> {
  if (entry.uncompressedSize > limit) {
    invalid(`entry '${entry.filename}' is ${entry.uncompressedSize} bytes, more than the limit of ${limit}`);
  }
  try {
    return await (entry as zip.FileEntry).getData(new zip.Uint8ArrayWriter(), { checkSignature: true });
  } catch (e) {
    invalid(`entry '${entry.filename}' cannot be read (${(e as Error).message})`, "broken_zip");
  }
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
 * @throws {TooLargeError} When the zip is larger than `limits.maxPackageBytes`.
 */
export async function checkPackage(
  bytes: Uint8Array,
  defaultName = "task",
  limits: PackageLimits = DEFAULT_PACKAGE_LIMITS,
): Promise<CheckedPackage> {
  const planned = await plan(bytes, limits);
  const byPath = new Map(planned.map((p) => [p.path, p]));
  const links = new Map<string, string>();
  for (const p of planned) {
    if (p.kind !== "symlink") continue;
    const target = new TextDecoder().decode(await readEntry(p.entry, 4096));
    const resolved = linkTarget(p.path, target);
    if (resolved === null) {
      invalid(`entry '${p.entry.filename}' is a symlink to '${target}', outside the task root`, "symlink_escapes_root");
    }
    links.set(p.path, resolved);
  }
  const tomlEntry = byPath.get("task.toml")!;
  if (tomlEntry.kind !== "file") invalid("task.toml is not a regular file", "missing_task_toml");
  const tomlBytes = await readEntry(tomlEntry.entry, 64 * 1024);
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
    digest: await sha256Digest(bytes),
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
      const link = new TextDecoder().decode(await readEntry(p.entry, 4096));
      if (linkTarget(p.path, link) === null) {
        invalid(`entry '${p.entry.filename}' is a symlink to '${link}', outside the task root`, "symlink_escapes_root");
      }
      await Deno.symlink(link, target);
      continue;
    }
    const data = await readEntry(p.entry, limits.maxUnpackedBytes - written);
    written += data.byteLength;
    const executable = (p.mode & 0o111) !== 0 || p.entry.executable || p.path === entrypoint;
    await Deno.writeFile(target, data, { mode: executable ? 0o755 : 0o644, createNew: true });
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
