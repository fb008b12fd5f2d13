/**
 * Reading an uploaded package from a request: a raw zip body or a multipart
 * field `package` (with, optionally, field `overrides`), within the package
 * size limit.
 *
 * A raw body is read as it arrives, its SHA-256 computed on the way: up to
 * {@linkcode MEMORY_BYTES} it stays in memory (most packages: no file to
 * write, reopen and remove on the way of a submit); past that it is
 * streamed to a file in the spool folder, since the package checks need the
 * zip's central directory, which is at its end, so the zip is checked from
 * that file and then streamed from it into the object store. A multipart
 * body's field `package` is read the same way as the body streams in. A
 * large package is never held whole in memory.
 *
 * @module
 */
import type { Context } from "hono";
import { createHash } from "node:crypto";
import { TooLargeError, ValidationError } from "../core/errors.ts";
import { type CheckedPackage, checkPackage, checkPackageFile, type PackageLimits } from "../core/package.ts";
import type { Digest } from "../core/schema.ts";
import { boundaryOf, streamFileField } from "./multipart.ts";

/** Uploads up to this size are held in memory; larger ones go to a file as they come. */
export const MEMORY_BYTES = 2 ** 20;

/** An uploaded package, in memory or spooled to a file; dispose of it to remove the file. */
export interface Upload extends AsyncDisposable {
  /** The spooled zip, or null when it is held in memory (`bytes`). */
  file: string | null;
  /** The zip, when small enough to be held in memory. */
  bytes: Uint8Array | null;
  /** Its size in bytes. */
  size: number;
  /** Its `sha256-<hex>` digest. */
  digest: Digest;
  /** From `?name=` or the file name, made safe; `task` when neither is given. */
  name: string;
  /** Multipart field `overrides`: a TOML fragment laid over task.toml. */
  overrides?: string;
  /** The zip as a stream (for the object store). */
  open(): Promise<ReadableStream<Uint8Array>>;
}

function tooLarge(size: number | string, limits: PackageLimits): never {
  throw new TooLargeError(
    `Cannot accept package as its size ${size} bytes exceeds the limit of ${limits.maxPackageBytes} bytes`,
    { code: "package_too_large" },
  );
}

/** What {@linkcode spool} read: the bytes in memory or the file they went to, their size and digest. */
type Spooled = { file: string | null; bytes: Uint8Array | null; size: number; digest: Digest };

/**
 * Reads what `feed` gives, hashing it and refusing it past the limit: in
 * memory up to {@linkcode MEMORY_BYTES}, then into a new file in `dir`.
 */
async function spool(
  dir: string | undefined,
  limits: PackageLimits,
  feed: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<Spooled> {
  const hash = createHash("sha256");
  let size = 0;
  let held: Uint8Array[] = [];
  // Set inside `feed`'s callback: typed so that the checks after it do not take them for null.
  let file = null as string | null;
  let out = null as Deno.FsFile | null;
  const writeAll = async (chunk: Uint8Array) => {
    for (let at = 0; at < chunk.byteLength;) at += await out!.write(chunk.subarray(at));
  };
  try {
    await feed(async (chunk) => {
      size += chunk.byteLength;
      if (size > limits.maxPackageBytes) tooLarge(`more than ${limits.maxPackageBytes}`, limits);
      hash.update(chunk);
      if (!out && size <= MEMORY_BYTES) return void held.push(chunk);
      if (!out) {
        if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
        file = await Deno.makeTempFile({ dir, prefix: "upload-", suffix: ".zip" });
        out = await Deno.open(file, { write: true, truncate: true });
        for (const part of held) await writeAll(part);
        held = [];
      }
      await writeAll(chunk);
    });
  } catch (e) {
    out?.close();
    if (file) await Deno.remove(file).catch(() => {});
    throw e;
  }
  out?.close();
  let bytes: Uint8Array | null = null;
  if (!file) {
    bytes = new Uint8Array(size);
    let at = 0;
    for (const part of held) bytes.set(part, at), at += part.byteLength;
  }
  return { file, bytes, size, digest: `sha256-${hash.digest("hex")}` };
}

/** Checks an uploaded package (see `checkPackage`), from memory or from its file. */
export function checkUpload(upload: Upload, limits: PackageLimits): Promise<CheckedPackage> {
  return upload.file === null
    ? checkPackage(upload.bytes!, upload.name, limits, upload.overrides, upload.digest)
    : checkPackageFile(upload.file, upload.name, limits, upload.digest, upload.overrides);
}

/**
 * Reads the package a request carries into a file in `spoolDir` (the
 * system's temporary folder when absent).
 *
 * @throws {TooLargeError} When the body exceeds `limits.maxPackageBytes`.
 * @throws {ValidationError} When the body is of another type or the multipart field is missing.
 */
export async function readUpload(c: Context, limits: PackageLimits, spoolDir?: string): Promise<Upload> {
  const declared = Number(c.req.header("content-length") ?? "0");
  if (declared > limits.maxPackageBytes) tooLarge(declared, limits);
  const type = c.req.header("content-type") ?? "";
  const body = c.req.raw.body ?? new Blob([]).stream();
  let name = c.req.query("name") ?? "";
  let spooled: Spooled;
  const texts = new Map<string, string | null>([["overrides", null]]);
  if (type.startsWith("multipart/form-data")) {
    const boundary = boundaryOf(type);
    let filename: string | null = null;
    spooled = await spool(spoolDir, limits, async (write) => {
      filename = await streamFileField(body, boundary, "package", write, texts);
      if (filename === null) {
        throw new ValidationError("Cannot accept upload as multipart field 'package' is missing or not a file", {
          code: "missing_package",
        });
      }
    });
    name ||= filename ?? "";
  } else if (type === "" || type.startsWith("application/zip") || type.startsWith("application/octet-stream")) {
    spooled = await spool(spoolDir, limits, async (write) => {
      for await (const chunk of body) await write(chunk);
    });
  } else {
    throw new ValidationError(
      `Cannot accept upload of type '${type}': send application/zip, or multipart/form-data with field 'package'`,
      { code: "unsupported_media_type" },
    );
  }
  name = name.replace(/\.zip$/i, "").replace(/[^A-Za-z0-9._-]/g, "-").slice(0, 64) || "task";
  const { file, bytes } = spooled;
  // Form fields travel with CRLF line ends (as HTML forms send them): kept as the LF text that was meant.
  const overrides = texts.get("overrides")?.replace(/\r\n/g, "\n");
  return {
    ...spooled,
    name,
    ...(overrides !== undefined ? { overrides } : {}),
    open: async () =>
      file === null
        ? new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
        : (await Deno.open(file, { read: true })).readable,
    [Symbol.asyncDispose]: async () => void (file !== null && await Deno.remove(file).catch(() => {})),
  };
}
