/**
 * Task packages: a zip of a task root holding `task.toml`. Validated before
 * anything is stored (structure, sizes, names, links, task.toml), unpacked
 * on nodes the same careful way. The zip-level checks of every entry live in
 * `core/package_entries.ts`; this module adds task.toml, the inputs file and
 * the unpack.
 *
 * @module
 */
import { sha256Hex } from "./ids.ts";
import { createHash } from "node:crypto";
import { dirname, join } from "node:path";
import { tooLarge, ValidationError } from "./errors.ts";
import { type InputRows, MAX_INPUTS_BYTES, parseInputs } from "./inputs.ts";
import {
  checkDeclaredSizes,
  DEFAULT_PACKAGE_LIMITS,
  invalid,
  linkResolver,
  linkTarget,
  type PackageLimits,
  planEntries,
  type PlannedEntry,
  readEntry,
  streamEntry,
} from "./package_entries.ts";
import type { Digest, InputsSpec, TaskSpec } from "./schema.ts";
import { MAX_INSTANCES, parseTaskToml } from "./task_toml.ts";
import { bytesSource, fileSource, type ZipSource } from "./zip_source.ts";

export { DEFAULT_PACKAGE_LIMITS, type PackageLimits } from "./package_entries.ts";

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

/** Computes the `sha256-<hex>` digest of bytes. */
export async function sha256Digest(bytes: Uint8Array): Promise<Digest> {
  // Small: node:crypto on the calling thread, no round trip to a thread pool (0.004 against 0.03 ms for a small
  // zip). Large: crypto.subtle, off the event loop (a 1 GiB package would hold it for seconds).
  if (bytes.byteLength <= 1024 * 1024) return `sha256-${sha256Hex(bytes)}`;
  const hash = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>));
  return `sha256-${Array.from(hash, (b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/**
 * Checks a package completely: zip structure, entry names and sizes, links,
 * and task.toml (including that the entrypoint and workdir exist inside).
 *
 * @param bytes The zip.
 * @param defaultName Task name when task.toml gives none.
 * @param overrides A TOML fragment laid over task.toml before its checks (multipart field `overrides`).
 * @param digest The zip's digest, when known already (else it is computed).
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
  digest?: Digest,
): Promise<CheckedPackage> {
  if (bytes.byteLength > limits.maxPackageBytes) {
    throw tooLarge("accept package", bytes.byteLength, limits.maxPackageBytes, "package_too_large");
  }
  return await checkRemembered(
    bytesSource(bytes),
    digest ?? await sha256Digest(bytes),
    defaultName,
    limits,
    overrides,
  );
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

async function checkPackageSource(
  zipped: ZipSource,
  defaultName: string,
  limits: PackageLimits,
  digest: Digest,
  overrides: string | undefined,
): Promise<CheckedPackage> {
  const planned = await planEntries(zipped, limits);
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
  const planned = await planEntries(zipped, limits);
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
  const planned = await planEntries(source, limits);
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
