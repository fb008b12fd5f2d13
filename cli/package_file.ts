/**
 * Preparing a package for `parallelic submit`: a `.zip` is sent as it is; a
 * folder is listed, its size checked against the manager's limits before
 * anything is zipped, then zipped into a temporary file (never into memory)
 * that is uploaded from disk and removed afterwards.
 *
 * @module
 */
import { TooLargeError } from "../core/errors.ts";
import { type FolderEntry, listFolder, zipEntries } from "../core/package_zip.ts";
import { basename, join } from "../core/posix_path.ts";
import { usage } from "./client.ts";
import { parseIgnore } from "./ignore.ts";

/** A package to upload: its size, and its bytes as a new stream each time (a retry sends it again). */
export interface PackageBody {
  size: number;
  open(): Promise<ReadableStream<Uint8Array>>;
}

/** A package ready to upload, named; dispose of it to remove its temporary file. */
export interface LocalPackage extends PackageBody, AsyncDisposable {
  name: string;
  /** The zip on disk: the given file, or the temporary one. */
  file: string;
}

/** The manager's limits a package is checked against before zipping (null: the manager does not say). */
export interface PackageSizeLimits {
  maxPackageBytes: number;
  maxUnpackedBytes?: number;
}

/** Formats a byte count. */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

/** The biggest files, for a message: `a.bin (600.0 MiB), b.exr (300.0 MiB)`. */
export function biggestFiles(entries: FolderEntry[], count = 3): string {
  return entries.filter((e) => e.kind === "file").sort((a, b) => b.size - a.size).slice(0, count)
    .map((e) => `${e.path} (${formatBytes(e.size)})`).join(", ");
}

const HOW_TO_SHRINK = "leave them out with .parallelicignore, or upload them as a data set " +
  "(parallelic data put NAME PATH) and name it under [data] in task.toml";

/** A file the package is read from (a .zip given as it is). */
function fileBody(path: string, size: number): PackageBody {
  return { size, open: async () => (await Deno.open(path, { read: true })).readable };
}

/**
 * Zips `entries` of folder `root` into `file`, refusing as soon as the zip
 * grows past `maxBytes`.
 */
async function zipInto(
  root: string,
  entries: FolderEntry[],
  file: string,
  maxBytes: number | undefined,
  progress: (zippedBytes: number) => void,
): Promise<number> {
  const out = await Deno.open(file, { write: true, createNew: true, mode: 0o600 });
  let size = 0;
  let refused: TooLargeError | undefined;
  const counter = new TransformStream<Uint8Array, Uint8Array>({
    transform(chunk, controller) {
      size += chunk.byteLength;
      if (maxBytes !== undefined && size > maxBytes) {
        throw refused = new TooLargeError(
          `Cannot submit '${basename(root)}' as its zip grew past the manager's package limit of ${maxBytes} bytes ` +
            `(${formatBytes(maxBytes)}, set by the manager's --max-package-size); its biggest files: ${
              biggestFiles(entries)
            }: ${HOW_TO_SHRINK}`,
          { code: "package_too_large" },
        );
      }
      progress(size);
      controller.enqueue(chunk);
    },
  });
  const written = counter.readable.pipeTo(out.writable);
  try {
    await zipEntries(root, entries, counter.writable);
    await written;
  } catch (e) {
    await written.catch(() => {});
    // What zip.js reports of a refused write is its own wording; the refusal says what to do.
    throw refused ?? e;
  }
  return size;
}

/**
 * Loads the package at `path`: a `.zip` as it is, or a folder zipped into a
 * temporary file (honouring .parallelicignore, leaving out .git). Refuses a
 * folder whose files alone exceed the unpacked limit before zipping, and
 * one whose zip exceeds the package limit as soon as it does, naming the
 * limit and the biggest files. The limits may still be on their way: they
 * are waited for once the folder is listed.
 */
export async function loadPackage(
  path: string,
  limitsOrAsked: PackageSizeLimits | null | Promise<PackageSizeLimits | null>,
  progress: (zippedBytes: number, fileBytes: number) => void = () => {},
): Promise<LocalPackage> {
  const stat = await Deno.stat(path).catch(() => usage(`Cannot read '${path}': no such file or folder`));
  if (stat.isFile) {
    return {
      ...fileBody(path, stat.size),
      name: basename(path).replace(/\.zip$/i, ""),
      file: path,
      [Symbol.asyncDispose]: () => Promise.resolve(),
    };
  }
  let ignore = (_p: string, _d: boolean) => false;
  try {
    ignore = parseIgnore(await Deno.readTextFile(join(path, ".parallelicignore")));
  } catch { /* no ignore file */ }
  const name = basename(await Deno.realPath(path));
  const entries = await listFolder(path, ignore);
  const limits = await limitsOrAsked;
  const fileBytes = entries.reduce((n, e) => n + e.size, 0);
  const maxUnpacked = limits?.maxUnpackedBytes;
  if (maxUnpacked !== undefined && fileBytes > maxUnpacked) {
    throw new TooLargeError(
      `Cannot submit '${name}' as its files total ${fileBytes} bytes (${formatBytes(fileBytes)}), more than the ` +
        `manager's limit of ${maxUnpacked} bytes (${formatBytes(maxUnpacked)}) for an unpacked package; ` +
        `its biggest files: ${biggestFiles(entries)}: ${HOW_TO_SHRINK}`,
      { code: "too_large_unpacked" },
    );
  }
  const dir = await Deno.makeTempDir({ prefix: "parallelic-package-" });
  const remove = () => Deno.remove(dir, { recursive: true }).catch(() => {});
  try {
    const file = join(dir, `${name}.zip`);
    const size = await zipInto(path, entries, file, limits?.maxPackageBytes, (n) => progress(n, fileBytes));
    return { ...fileBody(file, size), name, file, [Symbol.asyncDispose]: remove };
  } catch (e) {
    await remove();
    throw e;
  }
}
