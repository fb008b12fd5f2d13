/**
 * The data and workspace commands: `data put|ls|rm`, `results` and `rm`.
 * Uploads and downloads stream from and to disk with a progress line.
 *
 * @module
 */
import { basename, join } from "node:path";
import type { DataSetView, DataVersionRecord, StorageView, TaskView } from "../core/schema.ts";
import { extractTar, type TarSource, tarStream } from "../core/tar.ts";
import { type Client, limits, usage } from "./client.ts";
import { bar, formatBytes, status, table } from "./commands.ts";
import { parseIgnore } from "./ignore.ts";

/** The header in which the CLI declares the bytes of file content it uploads. */
const UPLOAD_BYTES_HEADER = "parallelic-upload-bytes";

/** Counts bytes passing through, drawing a progress line. */
function progress(verb: string, total: number | null): TransformStream<Uint8Array, Uint8Array> {
  let done = 0;
  let last = 0;
  const started = Date.now();
  const draw = (final = false) => {
    const secs = Math.max((Date.now() - started) / 1000, 0.001);
    const rate = `${formatBytes(done / secs)}/s`;
    const of = total === null
      ? formatBytes(done)
      : `${bar(Math.min(done, total), total)} ${formatBytes(done)} / ${formatBytes(total)}`;
    status(`${verb} ${of}  ${rate}${final ? "\n" : ""}`);
  };
  return new TransformStream({
    transform(chunk, controller) {
      done += chunk.byteLength;
      if (Date.now() - last > 100) {
        last = Date.now();
        draw();
      }
      controller.enqueue(chunk);
    },
    flush: () => draw(true),
  });
}

/** The files of a data set folder (or one file): leaves out `.git` and what `.parallelicignore` names. */
export async function dataSources(path: string): Promise<{ sources: TarSource[]; bytes: number }> {
  const stat = await Deno.stat(path).catch(() => usage(`Cannot read '${path}': no such file or folder`));
  const open = (abs: string) => async () => (await Deno.open(abs)).readable;
  if (stat.isFile) {
    return {
      sources: [{ path: basename(path), size: stat.size, mode: stat.mode ?? 0o644, open: open(path) }],
      bytes: stat.size,
    };
  }
  let ignore = (_p: string, _d: boolean) => false;
  try {
    ignore = parseIgnore(await Deno.readTextFile(join(path, ".parallelicignore")));
  } catch { /* no ignore file */ }
  const sources: TarSource[] = [];
  let bytes = 0;
  const walk = async (rel: string) => {
    const items: Deno.DirEntry[] = [];
    for await (const item of Deno.readDir(rel ? join(path, rel) : path)) items.push(item);
    items.sort((a, b) => a.name < b.name ? -1 : 1);
    for (const item of items) {
      const relPath = rel ? `${rel}/${item.name}` : item.name;
      if (item.name === ".git" || relPath === ".parallelicignore" || ignore(relPath, item.isDirectory)) continue;
      const abs = join(path, relPath);
      // Symlinks count as what they point to; a folder link is not followed (no loops).
      const info = item.isSymlink ? await Deno.stat(abs).catch(() => null) : null;
      if (item.isDirectory) await walk(relPath);
      else if (item.isFile || info?.isFile) {
        const s = info ?? await Deno.stat(abs);
        sources.push({ path: relPath, size: s.size, mode: s.mode ?? 0o644, open: open(abs) });
        bytes += s.size;
      } else if (item.isSymlink) console.error(`Leaving out '${relPath}': a link to a folder or to nothing`);
    }
  };
  await walk("");
  return { sources, bytes };
}

/** `parallelic data put NAME PATH [--shared]`: `shared` undefined leaves an existing data set's sharing as it is. */
export async function dataPut(client: Client, name: string, path: string, shared?: boolean): Promise<number> {
  const { sources, bytes } = await dataSources(path);
  if (sources.length === 0) usage(`Cannot upload data set '${name}' as '${path}' holds no files`);
  const known = await limits(client);
  const limit = known?.maxDataSetBytes;
  if (limit !== undefined && bytes > limit) {
    usage(`Cannot store data set '${name}' as its size ${bytes} bytes exceeds the limit of ${limit} bytes`);
  }
  const maxFiles = known?.maxDataSetFiles;
  if (maxFiles !== undefined && sources.length > maxFiles) {
    usage(`Cannot store data set '${name}' as its ${sources.length} files exceed the limit of ${maxFiles} files`);
  }
  console.error(`Data set ${name}: ${sources.length} files, ${formatBytes(bytes)}`);
  const body = tarStream(sources).pipeThrough(progress("Uploading", bytes + sources.length * 1024));
  const query = shared === undefined ? "" : `?shared=${shared ? 1 : 0}`;
  const res = await client.upload(`/api/v1/data/${encodeURIComponent(name)}${query}`, {
    method: "POST",
    headers: { "content-type": "application/x-tar", [UPLOAD_BYTES_HEADER]: String(bytes) },
    body,
  });
  const rec = await res.json() as DataVersionRecord & { created: boolean };
  console.log(`${rec.name}@${rec.version}`);
  console.error(
    rec.created
      ? `Stored ${name}@${rec.version.slice(0, 19)}…: ${rec.files} files, ${formatBytes(rec.bytes)} (${
        formatBytes(rec.newBytes)
      } new)`
      : `Already stored: ${name}@${rec.version.slice(0, 19)}… is now the newest version`,
  );
  return 0;
}

/** `parallelic data share|unshare NAME` */
export async function dataShare(client: Client, name: string, shared: boolean): Promise<number> {
  const set = await client.json<DataSetView>(`/api/v1/data/${encodeURIComponent(name)}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ shared }),
  });
  console.log(`${set.name} (owner ${set.owner}) is ${set.shared ? "shared with every user" : "not shared"}`);
  return 0;
}

/** `parallelic data ls [NAME]` */
export async function dataLs(client: Client, name: string | undefined, json: boolean): Promise<number> {
  if (name) {
    const set = await client.json<DataSetView>(`/api/v1/data/${encodeURIComponent(name)}`);
    if (json) return console.log(JSON.stringify(set, null, 2)), 0;
    console.log(table([
      ["VERSION", "FILES", "SIZE", "NEW", "OWNER", "PUT"],
      ...set.versions.map((v) => [
        v.version,
        String(v.files),
        formatBytes(v.bytes),
        formatBytes(v.newBytes),
        v.owner,
        new Date(v.putAt).toISOString(),
      ]),
    ]));
    return 0;
  }
  const { datasets } = await client.json<{ datasets: DataSetView[] }>("/api/v1/data");
  if (json) return console.log(JSON.stringify(datasets, null, 2)), 0;
  if (datasets.length === 0) {
    console.log("No data sets yet. Upload one: parallelic data put NAME PATH");
  } else {
    console.log(table([
      ["NAME", "OWNER", "SHARED", "VERSIONS", "NEWEST", "SIZE", "STORED"],
      ...datasets.map((d) => [
        d.name,
        d.owner,
        d.shared ? "yes" : "no",
        String(d.versions.length),
        `${d.versions[0].version.slice(0, 19)}…`,
        formatBytes(d.versions[0].bytes),
        formatBytes(d.bytes),
      ]),
    ]));
  }
  const s = await client.json<StorageView>("/api/v1/storage");
  console.log(
    `\nStorage: data ${formatBytes(s.data)}, workspaces ${formatBytes(s.workspaces)}, packages ${
      formatBytes(s.packages)
    }, logs ${formatBytes(s.logs)}`,
  );
  return 0;
}

/** `parallelic data rm NAME[@VERSION]` */
export async function dataRm(client: Client, ref: string): Promise<number> {
  const at = ref.indexOf("@");
  const name = at < 0 ? ref : ref.slice(0, at);
  const version = at < 0 ? "" : `/${encodeURIComponent(ref.slice(at + 1))}`;
  const res = await client.json<{ removed: string[]; freedBytes: number }>(
    `/api/v1/data/${encodeURIComponent(name)}${version}`,
    { method: "DELETE" },
  );
  for (const v of res.removed) console.log(`Deleted ${name}@${v}`);
  console.error(`Freed ${formatBytes(res.freedBytes)}`);
  return 0;
}

/** Options of {@linkcode results}. */
export interface ResultsOptions {
  /** A folder, or a file ending in `.zip`. @default {"./<ID>"} */
  output?: string;
  instance?: number;
  finalize?: boolean;
}

/** `parallelic results ID [-o DIR|FILE.zip] [--instance N] [--finalize]` */
export async function results(client: Client, id: string, options: ResultsOptions): Promise<number> {
  const task = await client.json<TaskView>(`/api/v1/tasks/${id}`);
  if (task.state === "queued" || task.state === "running") {
    const done = task.counts.succeeded + task.counts.failed + task.counts.cancelled;
    console.error(
      `Task ${task.id} is ${task.state} (${done} of ${task.instances} instances ended): these are the outputs ` +
        `stored so far; for all of them, wait for it (parallelic wait ${task.id}) and ask again`,
    );
  }
  const query = options.finalize
    ? "?finalize=1"
    : options.instance !== undefined
    ? `?instance=${options.instance}`
    : "";
  const suffix = options.finalize ? "-finalize" : options.instance !== undefined ? `-${options.instance}` : "";
  const output = options.output ?? `${task.id}${suffix}`;
  const estimate = options.finalize || options.instance !== undefined ? null : task.outputBytes ?? null;
  if (output.toLowerCase().endsWith(".zip")) {
    const res = await client.fetch(`/api/v1/tasks/${task.id}/workspace.zip${query}`);
    const file = await Deno.open(output, { write: true, create: true, truncate: true });
    await res.body!.pipeThrough(progress("Downloading", estimate)).pipeTo(file.writable);
    console.error(`Saved ${output}`);
    return 0;
  }
  const res = await client.fetch(`/api/v1/tasks/${task.id}/workspace.tar${query}`);
  const got = await extractTar(res.body!.pipeThrough(progress("Downloading", estimate)), output, "results");
  console.error(`Saved ${got.files} files (${formatBytes(got.bytes)}) in ${output}/`);
  return 0;
}

/** `parallelic rm ID`: deletes a finished task and everything it holds. */
export async function rmTask(client: Client, id: string): Promise<number> {
  const res = await client.json<{ id: string; freedBytes: number }>(`/api/v1/tasks/${id}`, { method: "DELETE" });
  console.log(`Deleted task ${res.id} (freed ${formatBytes(res.freedBytes)})`);
  return 0;
}
