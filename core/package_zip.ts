/**
 * Zipping a task folder into a package whose bytes, and so whose digest,
 * depend only on what the folder holds: entry names, contents, symlink
 * targets and whether a file is executable. Entries come in sorted order,
 * every entry carries the same fixed date and no extra fields (no extended
 * timestamps, no uid/gid), files are mode 0755 or 0644 (the only modes a
 * node gives them) and folders 0755. The same folder zipped twice, on any
 * machine and at any time, by the same version, gives the same digest: it
 * is stored once and fetched once by each node.
 *
 * The zip is written to a stream as it is made: a large folder is never
 * held in memory. `zip_writer.ts` writes it, or zip.js (the same bytes) when
 * it needs Zip64.
 *
 * @module
 */
import { ValidationError } from "./errors.ts";
import { join } from "./posix_path.ts";
import { fitsWithoutZip64, ZipWriter } from "./zip_writer.ts";

/** The date every entry carries (local time, so that the MS-DOS fields read 1980-01-01 00:00 in any zone). */
const FIXED_DATE = new Date(1980, 0, 1, 0, 0, 0);

/** One entry of a folder to zip. */
export interface FolderEntry {
  /** Path inside the task root, `/`-separated. */
  path: string;
  kind: "file" | "dir" | "symlink";
  /** File size in bytes (0 for folders and links). */
  size: number;
  /** True for a file with any execute bit. */
  executable: boolean;
  /** A symlink's target. */
  target?: string;
}

/**
 * Lists a folder to zip, in the order it is zipped: each folder's entries
 * sorted by name, a folder before what it holds. Leaves out `.git` and the
 * names `ignore` says to.
 */
export async function listFolder(
  root: string,
  ignore: (relPath: string, isDir: boolean) => boolean = () => false,
): Promise<FolderEntry[]> {
  const out: FolderEntry[] = [];
  async function walk(rel: string) {
    const items: Deno.DirEntry[] = [];
    for await (const item of Deno.readDir(rel ? join(root, rel) : root)) items.push(item);
    items.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const item of items) {
      const path = rel ? `${rel}/${item.name}` : item.name;
      if (item.name === ".git" || ignore(path, item.isDirectory)) continue;
      const full = join(root, path);
      if (item.isSymlink) {
        out.push({ path, kind: "symlink", size: 0, executable: false, target: await Deno.readLink(full) });
      } else if (item.isDirectory) {
        out.push({ path, kind: "dir", size: 0, executable: false });
        await walk(path);
      } else if (item.isFile) {
        const stat = await Deno.stat(full);
        out.push({ path, kind: "file", size: stat.size, executable: ((stat.mode ?? 0) & 0o111) !== 0 });
      }
    }
  }
  await walk("");
  return out;
}

/** Files up to this size are read whole into memory to be zipped, larger ones streamed. */
const READ_WHOLE_BYTES = 1024 * 1024;

/** A file's content, refusing it when it no longer has the size it was listed with. */
async function fileContent(root: string, entry: FolderEntry): Promise<ReadableStream<Uint8Array> | Uint8Array> {
  const changed = () =>
    new ValidationError(
      `Cannot zip '${entry.path}' as it changed size while being read: expected ${entry.size} bytes`,
      { code: "file_changed" },
    );
  if (entry.size <= READ_WHOLE_BYTES) {
    const bytes = await Deno.readFile(join(root, entry.path));
    if (bytes.byteLength !== entry.size) throw changed();
    return bytes;
  }
  const file = await Deno.open(join(root, entry.path), { read: true });
  let seen = 0;
  return file.readable.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (seen > entry.size) throw changed();
        controller.enqueue(chunk);
      },
      flush() {
        if (seen !== entry.size) throw changed();
      },
    }),
  );
}

/** A folder's mode, a link's, an executable's and a plain file's, type bits included. */
const DIR_MODE = 0o040755;
const LINK_MODE = 0o120777;
const fileMode = (entry: FolderEntry) => entry.executable ? 0o100755 : 0o100644;

/** A link's content in the zip: its target. */
const targetContent = (entry: FolderEntry) => new TextEncoder().encode(entry.target ?? "");

/**
 * Zips the entries of a folder (as {@linkcode listFolder} gives them) into
 * `out`, which is closed at the end.
 */
export async function zipEntries(
  root: string,
  entries: FolderEntry[],
  out: WritableStream<Uint8Array>,
): Promise<void> {
  const bytes = entries.reduce((n, e) => n + e.size, 0);
  const nameBytes = entries.reduce((n, e) => n + e.path.length * 3 + 1, 0);
  if (!fitsWithoutZip64(entries.length, bytes, nameBytes)) return await zipEntriesWithZipJs(root, entries, out);
  const writer = new ZipWriter(out);
  try {
    for (const entry of entries) {
      if (entry.kind === "dir") await writer.directory(`${entry.path}/`, DIR_MODE);
      else if (entry.kind === "symlink") await writer.file(entry.path, LINK_MODE, targetContent(entry));
      else await writer.file(entry.path, fileMode(entry), await fileContent(root, entry));
    }
    await writer.close();
  } catch (e) {
    await writer.abort(e);
    throw e;
  }
}

/**
 * {@linkcode zipEntries} by zip.js: for a package that may need Zip64 (loaded
 * only then: it is slow to load), and for tests that compare the two.
 */
export async function zipEntriesWithZipJs(
  root: string,
  entries: FolderEntry[],
  out: WritableStream<Uint8Array>,
): Promise<void> {
  const zip = await import("@zip.js/zip.js");
  zip.configure({ useWebWorkers: false });
  const writer = new zip.ZipWriter(out, { level: 6, extendedTimestamp: false, lastModDate: FIXED_DATE });
  for (const entry of entries) {
    if (entry.kind === "dir") {
      await writer.add(`${entry.path}/`, undefined, { directory: true, unixMode: DIR_MODE });
    } else if (entry.kind === "symlink") {
      await writer.add(entry.path, new zip.TextReader(entry.target ?? ""), { unixMode: LINK_MODE });
    } else {
      const content = await fileContent(root, entry);
      await writer.add(entry.path, content instanceof Uint8Array ? new zip.Uint8ArrayReader(content) : content, {
        unixMode: fileMode(entry),
        zip64: entry.size >= 0xffffffff,
      });
    }
  }
  await writer.close();
}

/**
 * Zips a folder (task root) into bytes, keeping executable bits and in-root
 * symlinks, leaving out `.git` and the names `ignore` says to. For small
 * folders (tests, benchmarks); the CLI zips into a file with
 * {@linkcode zipEntries}.
 */
export async function zipFolder(
  root: string,
  ignore: (relPath: string, isDir: boolean) => boolean = () => false,
): Promise<Uint8Array> {
  const chunks: Uint8Array[] = [];
  await zipEntries(
    root,
    await listFolder(root, ignore),
    new WritableStream({ write: (c) => void chunks.push(c.slice()) }),
  );
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.byteLength, 0));
  let at = 0;
  for (const c of chunks) out.set(c, at), at += c.byteLength;
  return out;
}
