/**
 * The few POSIX path functions the CLI needs, giving what `node:path` gives.
 * Here rather than from `node:path`, whose first import starts Deno's Node
 * compatibility layer: about as long as the rest of the CLI's start.
 *
 * @module
 */

/** Resolves `.`, `..` and repeated slashes in `path` without reaching the file system, as `path.normalize`. */
export function normalize(path: string): string {
  if (path === "") return ".";
  const absolute = path.startsWith("/");
  const out: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part !== "..") out.push(part);
    else if (out.length > 0 && out[out.length - 1] !== "..") out.pop();
    else if (!absolute) out.push("..");
  }
  const body = out.join("/");
  const trailing = path.endsWith("/") ? "/" : "";
  if (absolute) return body === "" ? "/" : `/${body}${trailing}`;
  return `${body === "" ? "." : body}${trailing}`;
}

/** Joins path parts with `/` and normalizes the result, as `path.join`. */
export function join(...parts: string[]): string {
  const joined = parts.filter((p) => p !== "").join("/");
  return joined === "" ? "." : normalize(joined);
}

/** The last part of `path` (trailing slashes ignored), as `path.basename`. */
export function basename(path: string): string {
  let end = path.length;
  while (end > 1 && path[end - 1] === "/") end--;
  const trimmed = path.slice(0, end);
  return trimmed === "/" ? "" : trimmed.slice(trimmed.lastIndexOf("/") + 1);
}

/** `path` made absolute against the working folder and normalized, as `path.resolve` of one path. */
export function resolve(path: string): string {
  const full = normalize(path.startsWith("/") ? path : `${Deno.cwd()}/${path}`);
  return full.length > 1 && full.endsWith("/") ? full.slice(0, -1) : full;
}
