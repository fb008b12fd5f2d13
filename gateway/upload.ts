/**
 * Reading an uploaded package from a request: a raw zip body or a multipart
 * field `package` (with, optionally, field `overrides`), within the package
 * size limit.
 *
 * A raw body is streamed to a file in the spool folder as it arrives, its
 * SHA-256 computed on the way: the package checks need the zip's central
 * directory, which is at its end, so the zip is checked from that file and
 * then streamed from it into the object store. A multipart body's field
 * `package` is spooled the same way as the body streams in. Nothing holds
 * the package whole in memory.
 *
 * @module
 */
import type { Context } from "hono";
import { createHash } from "node:crypto";
import { TooLargeError, ValidationError } from "../core/errors.ts";
import type { PackageLimits } from "../core/package.ts";
import type { Digest } from "../core/schema.ts";
import { boundaryOf, streamFileField } from "./multipart.ts";

/** An uploaded package, spooled to a file; dispose of it to remove the file. */
export interface Upload extends AsyncDisposable {
  /** The spooled zip. */
  file: string;
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

/** Writes what `feed` gives to a new file in `dir`, hashing it and refusing it past the limit. */
async function spool(
  dir: string | undefined,
  limits: PackageLimits,
  feed: (write: (chunk: Uint8Array) => Promise<void>) => Promise<void>,
): Promise<{ file: string; size: number; digest: Digest }> {
  if (dir) await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
  const file = await Deno.makeTempFile({ dir, prefix: "upload-", suffix: ".zip" });
  const hash = createHash("sha256");
  let size = 0;
  try {
    using out = await Deno.open(file, { write: true, truncate: true });
    await feed(async (chunk) => {
      size += chunk.byteLength;
      if (size > limits.maxPackageBytes) tooLarge(`more than ${limits.maxPackageBytes}`, limits);
      hash.update(chunk);
      for (let at = 0; at < chunk.byteLength;) at += await out.write(chunk.subarray(at));
    });
  } catch (e) {
    await Deno.remove(file).catch(() => {});
    throw e;
  }
  return { file, size, digest: `sha256-${hash.digest("hex")}` };
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
  let spooled: { file: string; size: number; digest: Digest };
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
  const { file } = spooled;
  // Form fields travel with CRLF line ends (as HTML forms send them): kept as the LF text that was meant.
  const overrides = texts.get("overrides")?.replace(/\r\n/g, "\n");
  return {
    ...spooled,
    name,
    ...(overrides !== undefined ? { overrides } : {}),
    open: async () => (await Deno.open(file, { read: true })).readable,
    [Symbol.asyncDispose]: () => Deno.remove(file).catch(() => {}),
  };
}
