/**
 * Data set manifests. A version of a data set is the list of its files, in a
 * canonical text form, one line per file, sorted by the UTF-8 bytes of the
 * path:
 *
 * ```text
 * <sha256 hex of the content> <size in bytes> <mode: 644 or 755> <path>
 * ```
 *
 * The version id is `sha256:` and the SHA-256 hex of that text, so the same
 * files give the same version wherever they are uploaded from.
 *
 * @module
 */
import { sha256Hex } from "./ids.ts";
import { ValidationError } from "./errors.ts";
import type { DataVersion } from "./schema.ts";

/** One file of a data set version. */
export interface ManifestFile {
  /** Relative, `/`-separated, normalized. */
  path: string;
  size: number;
  /** 0o755 when executable, else 0o644. */
  mode: number;
  /** SHA-256 hex of the content. */
  sha256: string;
}

const encoder = new TextEncoder();
const LINE = /^([0-9a-f]{64}) (\d+) (644|755) (.+)$/;

/** Longest path accepted in a data set, in bytes. */
export const MAX_DATA_PATH_BYTES = 4096;

/**
 * Checks and normalizes the path of a file in a data set (a leading `./` is
 * dropped).
 *
 * @throws {ValidationError} When it is absolute, leaves the root, or holds
 * control characters, naming the entry.
 */
export function checkDataPath(raw: string, what = "data set"): string {
  const parts = raw.split("/").filter((p) => p !== "" && p !== ".");
  const bad = (why: string): never => {
    throw new ValidationError(`Cannot store ${what} as entry '${raw}' ${why}`, { code: "bad_entry_name" });
  };
  if (raw.startsWith("/")) bad("is an absolute path");
  if (parts.includes("..")) bad("escapes its root");
  // deno-lint-ignore no-control-regex
  if (/[\x00-\x1f\x7f\\]/.test(raw)) bad("has a control character or backslash in its name");
  if (parts.length === 0) bad("has no file name");
  const path = parts.join("/");
  if (encoder.encode(path).length > MAX_DATA_PATH_BYTES) bad(`is longer than ${MAX_DATA_PATH_BYTES} bytes`);
  return path;
}

function compareBytes(a: string, b: string): number {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/** The canonical manifest text of `files` (any order in, sorted out). */
export function manifestText(files: readonly ManifestFile[]): string {
  return [...files].sort((a, b) => compareBytes(a.path, b.path))
    .map((f) => `${f.sha256} ${f.size} ${(f.mode & 0o111) ? "755" : "644"} ${f.path}\n`).join("");
}

/** The version id of a manifest text: `sha256:<hex>`. */
export function versionOf(text: string): DataVersion {
  return `sha256:${sha256Hex(text)}`;
}

/**
 * Parses a manifest, checking that it is the one `version` names.
 *
 * @throws {ValidationError} When a line is malformed or the text does not match the version.
 */
export function parseManifest(text: string, version?: DataVersion): ManifestFile[] {
  if (version && versionOf(text) !== version) {
    throw new ValidationError(`Manifest does not match data set version ${version}`, { code: "manifest_mismatch" });
  }
  const files: ManifestFile[] = [];
  for (const line of text.split("\n")) {
    if (!line) continue;
    const m = LINE.exec(line);
    if (!m) throw new ValidationError(`Manifest line '${line.slice(0, 80)}' is malformed`, { code: "bad_manifest" });
    files.push({ sha256: m[1], size: Number(m[2]), mode: m[3] === "755" ? 0o755 : 0o644, path: m[4] });
  }
  return files;
}

/** Bytes of distinct content across manifests (a file stored twice counts once). */
export function distinctBytes(manifests: Iterable<readonly ManifestFile[]>): number {
  const sizes = new Map<string, number>();
  for (const files of manifests) for (const f of files) sizes.set(f.sha256, f.size);
  let total = 0;
  for (const size of sizes.values()) total += size;
  return total;
}
