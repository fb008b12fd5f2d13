/**
 * Zips made in memory, for packages in tests and benchmarks.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";

zip.configure({ useWebWorkers: false });

/** A file in a zip made by {@linkcode makeZip}. */
export type ZipFile = string | { content: string; mode?: number; symlink?: boolean };

/** Makes a zip in memory from `{ path: content }`. */
export async function makeZip(files: Record<string, ZipFile>): Promise<Uint8Array> {
  const writer = new zip.ZipWriter(new zip.Uint8ArrayWriter());
  for (const [path, file] of Object.entries(files)) {
    const f = typeof file === "string" ? { content: file } : file;
    const mode = f.symlink ? 0o120777 : 0o100000 | (f.mode ?? (path.endsWith(".sh") ? 0o755 : 0o644));
    await writer.add(path, new zip.TextReader(f.content), { unixMode: mode });
  }
  return await writer.close();
}
