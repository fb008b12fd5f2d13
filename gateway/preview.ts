/**
 * Thumbnails of image outputs, made on demand and kept in a small cache.
 * ImageMagick (`magick`, or `convert`), when installed, scales PNG, JPEG and
 * EXR images down, under limits on memory, pixels and time, a few at a
 * time. Without it a small PNG or JPEG is served as it is (the browser
 * scales it) and anything else says what to install. A broken image gets
 * a placeholder saying why (see {@linkcode placeholderPreview}), never a 500.
 *
 * @module
 */
import { NotFoundError } from "../core/errors.ts";
import type { ImageKind } from "./outputs.ts";

/** Largest image a preview reads. */
export const MAX_PREVIEW_INPUT_BYTES = 256 * 2 ** 20;
/** Largest image served as it is when ImageMagick is missing. */
export const MAX_UNSCALED_BYTES = 4 * 2 ** 20;
/** Longest an ImageMagick run may take before it is killed. */
const CONVERT_TIMEOUT_MS = 20_000;
/** ImageMagick runs at once (each may use a core and 256 MiB). */
const CONVERT_AT_ONCE = 2;
/** ImageMagick's own limits: memory, pixels, time (s) and sides of what it decodes. */
const LIMITS = ["memory", "256MiB", "map", "512MiB", "disk", "1GiB", "area", "128MP", "time", "20"]
  .concat(["width", "32KP", "height", "32KP"]);

/** A preview: its bytes and media type. */
export interface Preview {
  bytes: Uint8Array;
  type: string;
  /** For a placeholder: why there is no preview. */
  why?: string;
}

/** What ImageMagick on this machine can do. */
interface Magick {
  /** The command and its leading arguments (`magick` or `convert`). */
  command: string;
  /** Whether it reads EXR (it needs its OpenEXR delegate). */
  exr: boolean;
}

let found: Promise<Magick | null> | null = null;

async function run(command: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(command, { args, stdout: "piped", stderr: "null", stdin: "null" }).output();
    return out.success ? new TextDecoder().decode(out.stdout) : null;
  } catch {
    return null;
  }
}

/** Finds ImageMagick once: `magick` (version 7) or `convert` (6), and whether it reads EXR. */
export function findMagick(): Promise<Magick | null> {
  found ??= (async () => {
    for (const command of ["magick", "convert"]) {
      const version = await run(command, ["-version"]);
      if (!version?.includes("ImageMagick")) continue;
      const formats = await run(command, ["-list", "format"]) ?? "";
      return { command, exr: /^\s*EXR\*?\s+\S+\s+r/m.test(formats) };
    }
    return null;
  })();
  return found;
}

/** The error a preview that cannot be made answers with. */
export function noPreview(what: string, why: string): NotFoundError {
  return new NotFoundError(`No preview of ${what}: ${why}`, { code: "preview_unavailable" });
}

let running = 0;
const waiting: Array<() => void> = [];

async function limited<T>(fn: () => Promise<T>): Promise<T> {
  if (running >= CONVERT_AT_ONCE) await new Promise<void>((go) => waiting.push(go));
  running++;
  try {
    return await fn();
  } finally {
    running--;
    waiting.shift()?.();
  }
}

/** Reads a whole stream, up to `maxBytes` (null past it). */
async function readCapped(body: ReadableStream<Uint8Array>, maxBytes: number): Promise<Uint8Array | null> {
  const parts: Uint8Array[] = [];
  let size = 0;
  for await (const part of body) {
    size += part.length;
    if (size > maxBytes) return null;
    parts.push(part);
  }
  return new Uint8Array(await new Blob(parts as Uint8Array<ArrayBuffer>[]).arrayBuffer());
}

/**
 * Makes a preview of an image at most `maxPx` on its longer side. `what`
 * names the image in errors; `body` is read (or cancelled) in every case.
 *
 * @throws {NotFoundError} `preview_unavailable`: too large, broken, or a format nothing here reads.
 */
export async function makePreview(
  what: string,
  kind: ImageKind,
  size: number,
  body: ReadableStream<Uint8Array>,
  maxPx: number,
): Promise<Preview> {
  const magick = await findMagick();
  const give = (why: string) => {
    void body.cancel().catch(() => {});
    return noPreview(what, why);
  };
  if (size > MAX_PREVIEW_INPUT_BYTES) throw give(`it is over ${MAX_PREVIEW_INPUT_BYTES / 2 ** 20} MiB`);
  if (!magick) {
    if (kind === "exr") throw give("no preview for EXR: install imagemagick with OpenEXR on the manager");
    if (size > MAX_UNSCALED_BYTES) throw give("it is too large to show unscaled: install imagemagick on the manager");
    const bytes = await readCapped(body, MAX_UNSCALED_BYTES);
    if (!bytes) throw noPreview(what, "it is larger than its size said");
    return { bytes, type: kind === "png" ? "image/png" : "image/jpeg" };
  }
  if (kind === "exr" && !magick.exr) throw give("no preview for EXR: install imagemagick with OpenEXR");
  return await limited(() => convert(magick, what, kind, body, maxPx));
}

async function convert(
  magick: Magick,
  what: string,
  kind: ImageKind,
  body: ReadableStream<Uint8Array>,
  maxPx: number,
): Promise<Preview> {
  const out = kind === "jpeg" ? "jpeg" : "png";
  const args: string[] = [];
  for (let i = 0; i < LIMITS.length; i += 2) args.push("-limit", LIMITS[i], LIMITS[i + 1]);
  args.push(`${kind}:-[0]`, "-auto-orient", "-thumbnail", `${maxPx}x${maxPx}>`, "-strip");
  if (out === "jpeg") args.push("-quality", "85");
  args.push(`${out}:-`);
  const child = new Deno.Command(magick.command, {
    args,
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    signal: AbortSignal.timeout(CONVERT_TIMEOUT_MS),
  }).spawn();
  // A process that stops reading early (a broken header) closes its input: that is its answer, not an error here.
  const fed = body.pipeTo(child.stdin).catch(() => {});
  const [result] = await Promise.all([child.output(), fed]);
  if (result.success && result.stdout.length > 0) return { bytes: result.stdout, type: `image/${out}` };
  if (result.signal) throw noPreview(what, `reading it took over ${CONVERT_TIMEOUT_MS / 1000} s`);
  const said = new TextDecoder().decode(result.stderr).split("\n")[0].replace(/^\S+: /, "").replace(/ [`'].*$/, "");
  throw noPreview(what, `ImageMagick could not read it (${said.slice(0, 160) || `exit ${result.code}`})`);
}

/** Escapes text for XML. */
const xml = (text: string) =>
  text.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);

/**
 * A placeholder `maxPx` square saying why there is no preview (an SVG: the
 * browser shows it where the image would be).
 */
export function placeholderPreview(why: string, maxPx: number): Preview {
  const words = why.split(/\s+/);
  const lines: string[] = [];
  for (const w of words) {
    const last = lines.length - 1;
    if (last >= 0 && (lines[last] + " " + w).length <= 18) lines[last] += " " + w;
    else lines.push(w.slice(0, 22));
  }
  // Large enough to read in a contact sheet's small tile.
  const shown = lines.slice(0, 7);
  const y0 = 136 - (shown.length - 1) * 13;
  const text = shown.map((l, i) => `<text x="128" y="${y0 + i * 26}">${xml(l)}</text>`).join("");
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${maxPx}" height="${maxPx}" viewBox="0 0 256 256">` +
    `<rect width="256" height="256" fill="#eceff3"/><path d="M0 0L256 256M256 0L0 256" stroke="#d3d8de" ` +
    `stroke-width="6"/><g font-family="sans-serif" font-size="22" fill="#3d4550" text-anchor="middle">` +
    `<rect x="4" y="${y0 - 28}" width="248" height="${shown.length * 26 + 16}" fill="#eceff3" opacity="0.92"/>` +
    `${text}</g></svg>`;
  return { bytes: new TextEncoder().encode(svg), type: "image/svg+xml" };
}

/** A cache of previews bounded by bytes, least recently used first out. */
export interface PreviewCache {
  get(key: string): Preview | undefined;
  set(key: string, preview: Preview): void;
  /** Bytes held. */
  readonly bytes: number;
}

/** Creates a {@linkcode PreviewCache} of at most `maxBytes`. */
export function createPreviewCache(maxBytes = 32 * 2 ** 20): PreviewCache {
  const entries = new Map<string, Preview>();
  let bytes = 0;
  return {
    get(key) {
      const hit = entries.get(key);
      if (hit) {
        entries.delete(key);
        entries.set(key, hit);
      }
      return hit;
    },
    set(key, preview) {
      if (preview.bytes.length > maxBytes / 8) return;
      const old = entries.get(key);
      if (old) bytes -= old.bytes.length;
      entries.delete(key);
      entries.set(key, preview);
      bytes += preview.bytes.length;
      for (const [k, v] of entries) {
        if (bytes <= maxBytes) break;
        entries.delete(k);
        bytes -= v.bytes.length;
      }
    },
    get bytes() {
      return bytes;
    },
  };
}
