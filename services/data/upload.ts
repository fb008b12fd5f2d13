/**
 * Storing an upload as a data set version: each file streams into
 * `tmp/<uuid>` (1 MiB chunks, never whole in memory) and is renamed to its
 * blob name, or dropped when that content is already stored; the manifest
 * and the version's record are committed under the catalog lock.
 *
 * @module
 */
import { checkDataPath, type ManifestFile, manifestText, versionOf } from "../../core/data_manifest.ts";
import { tooLarge, TooLargeError, ValidationError } from "../../core/errors.ts";
import { digestHex } from "../../core/objects.ts";
import { dataBlobObject, dataManifestObject, DataSetName, type DataVersionRecord } from "../../core/schema.ts";
import { readTar, type TarEntry } from "../../core/tar.ts";
import { dataSetKey, dataVersionKey } from "../../core/kv.ts";
import { accessRecord, mayPut } from "./access.ts";
import { accessOf, refreshBytes } from "./catalog.ts";
import { sweep } from "./gc.ts";
import { CATALOG, type DataState, type Upload } from "./state.ts";

/** How an upload's body is laid out. */
export type UploadFormat = { kind: "tar" } | { kind: "file"; path: string };

/** Options of `DataService.put`. */
export interface PutOptions {
  format: UploadFormat;
  /** Who uploads. */
  owner: string;
  /** Whether the uploader is an admin (who may add versions to any data set). */
  admin?: boolean;
  /** Sets whether the data set is shared (a new one is not, unless this says so). */
  shared?: boolean;
  /** Bytes of file content the client says it sends; checked against the limit before anything is read. */
  declaredBytes?: number;
}

/** The outcome of `DataService.put`. */
export interface PutResult {
  record: DataVersionRecord;
  /** False when the same content was already a version of this data set. */
  created: boolean;
}

const overLimit = (s: DataState, name: string, size: number, partial = false) =>
  tooLarge(`store data set '${name}'`, size, s.maxDataSetBytes, "data_set_too_large", partial);

/** Streams one file into the store; returns its content hash, size and whether it was new. */
async function storeFile(
  s: DataState,
  upload: Upload,
  name: string,
  body: ReadableStream<Uint8Array>,
  before: number,
) {
  const { bucket, locks, maxDataSetBytes } = s;
  const tmp = `tmp/${crypto.randomUUID()}`;
  upload.tmp.add(tmp);
  let seen = 0;
  const counted = body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        seen += chunk.byteLength;
        if (before + seen > maxDataSetBytes) throw overLimit(s, name, before + seen, true);
        controller.enqueue(chunk);
      },
    }),
  );
  const info = await bucket.put(tmp, counted);
  const hex = digestHex(info);
  upload.blobs.add(hex);
  const isNew = await locks.run(`blob/${hex}`, async () => {
    if (await bucket.info(dataBlobObject(hex))) {
      await bucket.delete(tmp);
      return false;
    }
    await bucket.rename(tmp, dataBlobObject(hex));
    return true;
  });
  upload.tmp.delete(tmp);
  return { hex, size: info.size, isNew };
}

async function* entriesOf(body: ReadableStream<Uint8Array>, format: UploadFormat): AsyncGenerator<TarEntry> {
  if (format.kind === "tar") return yield* readTar(body);
  yield { path: format.path, type: "file", size: -1, mode: 0o644, mtimeSec: 0, linkTarget: "", body };
}

/** Stores `body` as a version of data set `name` (see `DataService.put`). */
export async function put(
  s: DataState,
  name: string,
  body: ReadableStream<Uint8Array>,
  options: PutOptions,
): Promise<PutResult> {
  const { kv, clock, log, bucket, locks, uploads, maxDataSetBytes, maxDataSetFiles } = s;
  const checked = DataSetName.safeParse(name);
  if (!checked.success) {
    throw new ValidationError(`Cannot store data set '${name}': ${checked.error.issues[0].message}`, {
      code: "bad_data_set_name",
    });
  }
  if ((options.declaredBytes ?? 0) > maxDataSetBytes) throw overLimit(s, name, options.declaredBytes!);
  const by = { user: options.owner, admin: options.admin ?? false };
  // Checked before the upload is read (a refused upload costs nothing), and again when it commits.
  mayPut(name, await accessOf(s, name), by, options.shared);
  const upload: Upload = { tmp: new Set(), blobs: new Set() };
  uploads.add(upload);
  const files: ManifestFile[] = [];
  const paths = new Set<string>();
  let total = 0;
  let newBytes = 0;
  try {
    for await (const entry of entriesOf(body, options.format)) {
      if (entry.type === "dir") continue;
      if (entry.type !== "file") {
        throw new ValidationError(
          `Cannot store data set '${name}' as entry '${entry.path}' is a ${entry.type}: data sets hold regular files only`,
          { code: "bad_entry_type" },
        );
      }
      if (files.length >= maxDataSetFiles) {
        throw new TooLargeError(
          `Cannot store data set '${name}' as it holds more than ${maxDataSetFiles} files (--max-data-files): ` +
            "pack small files into fewer, larger ones",
          { code: "data_set_too_many_files" },
        );
      }
      const path = checkDataPath(entry.path, `data set '${name}'`);
      if (paths.has(path)) {
        throw new ValidationError(`Cannot store data set '${name}' as entry '${path}' appears twice`, {
          code: "duplicate_entry",
        });
      }
      paths.add(path);
      if (total + entry.size > maxDataSetBytes) throw overLimit(s, name, total + entry.size, true);
      const stored = await storeFile(s, upload, name, entry.body, total);
      total += stored.size;
      if (stored.isNew) newBytes += stored.size;
      files.push({ path, size: stored.size, mode: entry.mode & 0o111 ? 0o755 : 0o644, sha256: stored.hex });
    }
    if (files.length === 0) {
      throw new ValidationError(`Cannot store data set '${name}' as the upload holds no files`, {
        code: "empty_data_set",
      });
    }
    const text = manifestText(files);
    const version = versionOf(text);
    return await locks.run(CATALOG, async () => {
      const now = clock.now();
      const access = await accessOf(s, name);
      mayPut(name, access, by, options.shared);
      const existing = (await kv.get<DataVersionRecord>(dataVersionKey(name, version))).value;
      if (!(await bucket.info(dataManifestObject(version)))) {
        await bucket.put(dataManifestObject(version), ReadableStream.from([new TextEncoder().encode(text)]));
      }
      const record: DataVersionRecord = existing ? { ...existing, putAt: now } : {
        name,
        version,
        files: files.length,
        bytes: total,
        newBytes,
        createdAt: now,
        putAt: now,
        owner: options.owner,
      };
      const op = kv.atomic().set(dataVersionKey(name, version), record);
      if (!access) {
        op.set(dataSetKey(name), { name, owner: options.owner, shared: options.shared ?? false, createdAt: now });
      } else if (options.shared !== undefined && (access.legacy || access.shared !== options.shared)) {
        op.set(dataSetKey(name), accessRecord({ ...access, shared: options.shared }));
      }
      if (!(await op.commit()).ok) throw new Error("Deno KV atomic commit failed");
      await refreshBytes(s, name);
      log.info("data:put", { name, version, files: files.length, bytes: total, newBytes, created: !existing });
      return { record, created: !existing };
    });
  } catch (e) {
    await Promise.all([...upload.tmp].map((t) => bucket.delete(t).catch(() => false)));
    // Content stored before the failure is no longer pinned once this upload is over: collect it.
    if (newBytes > 0) {
      queueMicrotask(() => void sweep(s).catch((e) => log.warn("data:sweep-failed", { error: String(e) })));
    }
    throw e;
  } finally {
    uploads.delete(upload);
  }
}
