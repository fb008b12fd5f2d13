/**
 * One instance's outputs (or finalize's) as the API shows them: the files
 * of its stored tar with their sizes, and one file of it, streamed. Images
 * (PNG, JPEG, EXR) are told apart by their names, for previews.
 *
 * @module
 */
import { z } from "zod";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import type { TaskRecord } from "../core/schema.ts";
import type { TarSource } from "../core/tar.ts";
import type { WorkspaceSelection, WorkspaceService } from "../services/workspace.ts";

/** Most files one listing shows (the rest are counted). */
export const MAX_LISTED_OUTPUTS = 10_000;

/** The image formats previews are made of. */
export const ImageKind = z.enum(["png", "jpeg", "exr"]);
/** An image format previews are made of. */
export type ImageKind = z.infer<typeof ImageKind>;

/** `GET /api/v1/tasks/{id}/instances/{index}/outputs`. */
export const OutputsView = z.object({
  taskId: z.string(),
  /** The instance, or the number of instances for finalize. */
  index: z.number().int(),
  files: z.array(z.object({
    path: z.string(),
    size: z.number().int(),
    mtimeSec: z.number().int(),
    /** The image kind its name says (one the gateway may preview), else null. */
    image: ImageKind.nullable(),
  })),
  /** Files and bytes in all, listed or not. */
  count: z.number().int(),
  totalBytes: z.number().int(),
  /** True when more than {@linkcode MAX_LISTED_OUTPUTS} files were left out of `files`. */
  truncated: z.boolean(),
});
/** An instance's outputs as the API lists them. */
export type OutputsView = z.infer<typeof OutputsView>;

/** The image kind a file name says, or null. */
export function imageKind(path: string): ImageKind | null {
  const ext = /\.([a-z0-9]+)$/i.exec(path)?.[1].toLowerCase();
  if (ext === "png") return "png";
  if (ext === "jpg" || ext === "jpeg") return "jpeg";
  if (ext === "exr") return "exr";
  return null;
}

/** The media type a file is served with: images as themselves, anything else as bytes. */
export function mediaType(path: string): string {
  const kind = imageKind(path);
  return kind === "png" ? "image/png" : kind === "jpeg" ? "image/jpeg" : "application/octet-stream";
}

/** Which stored tar instance `index` of `task` reads (the number of instances is finalize). */
export function selectionOf(task: TaskRecord, index: number): WorkspaceSelection {
  return index === task.spec.instances ? { finalize: true } : { instance: index };
}

/** What an instance is called in messages. */
export const nameOf = (task: TaskRecord, index: number): string =>
  index === task.spec.instances ? `finalize of task '${task.id}'` : `instance ${index} of task '${task.id}'`;

/** Lists the output files of instance `index` (the first {@linkcode MAX_LISTED_OUTPUTS}; all are counted). */
export async function listOutputs(workspace: WorkspaceService, task: TaskRecord, index: number): Promise<OutputsView> {
  const files: OutputsView["files"] = [];
  let count = 0;
  let totalBytes = 0;
  for await (const f of workspace.outputs(task, selectionOf(task, index))) {
    count++;
    totalBytes += f.size;
    if (files.length < MAX_LISTED_OUTPUTS) {
      files.push({ path: f.path, size: f.size, mtimeSec: f.mtimeSec ?? 0, image: imageKind(f.path) });
    }
  }
  return { taskId: task.id, index, files, count, totalBytes, truncated: count > files.length };
}

/** Checks a `path` query: a relative path as outputs are stored. */
export function outputPathQuery(raw: string | undefined): string {
  if (raw === undefined || raw === "") {
    throw new ValidationError("Cannot read an output without its path: give ?path=NAME as the listing shows it", {
      code: "invalid_parameter",
    });
  }
  if (raw.length > 4096 || raw.startsWith("/") || raw.split("/").includes("..") || raw.includes("\0")) {
    throw new ValidationError(
      `Cannot read output '${raw.slice(0, 80)}': give a relative path inside the outputs, as the listing shows it`,
      { code: "invalid_parameter" },
    );
  }
  return raw;
}

/**
 * Finds one output file: the one at `path`, or (with none) the first image.
 * Read its content (`open()`) before anything else; the rest of the tar is
 * let go once it is read.
 *
 * @throws {NotFoundError} `output_not_found` or `no_image_output`.
 */
export async function findOutput(
  workspace: WorkspaceService,
  task: TaskRecord,
  index: number,
  path?: string,
): Promise<TarSource> {
  const it = workspace.outputs(task, selectionOf(task, index));
  // Not a for-await loop: leaving one would close the tar before the file is read.
  for (let next = await it.next(); !next.done; next = await it.next()) {
    const f = next.value;
    if (path === undefined ? imageKind(f.path) === null : f.path !== path) continue;
    const body = await f.open();
    const reader = body.getReader();
    // Once the file is read (or the reader gave up), the tar's reader stops too.
    const done = () => void it.return(undefined).catch(() => {});
    return {
      ...f,
      open: () =>
        new ReadableStream<Uint8Array>({
          async pull(controller) {
            try {
              const { value, done: end } = await reader.read();
              if (end) {
                controller.close();
                done();
              } else controller.enqueue(value);
            } catch (e) {
              controller.error(e);
              done();
            }
          },
          async cancel(reason) {
            await reader.cancel(reason).catch(() => {});
            done();
          },
        }, { highWaterMark: 0 }),
    };
  }
  if (path !== undefined) {
    throw new NotFoundError(`The ${nameOf(task, index)} has no output '${path.slice(0, 200)}'`, {
      code: "output_not_found",
    });
  }
  throw new NotFoundError(`The ${nameOf(task, index)} has no PNG, JPEG or EXR output to preview`, {
    code: "no_image_output",
  });
}
