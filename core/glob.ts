/**
 * Glob patterns over relative, `/`-separated paths: `*` (within one folder),
 * `**` (any number of folders), `?` (one character). Shared by
 * `.parallelicignore` (gitignore rules) and task.toml `[outputs] paths`.
 *
 * @module
 */

/** Options of {@linkcode globToRegExp}. */
export interface GlobOptions {
  /** Match from the start of the path only; otherwise at any folder boundary. @default {true} */
  anchored?: boolean;
  /** Also match everything below a matching folder (`out` matches `out/a.txt`). @default {false} */
  matchChildren?: boolean;
}

/**
 * Turns a glob pattern into a regular expression over relative paths.
 *
 * @example
 * ```ts
 * globToRegExp("out/**").test("out/a/b.txt"); // true
 * globToRegExp("*.log").test("x/y.log"); // false: anchored, and `*` stays in one folder
 * ```
 */
export function globToRegExp(pattern: string, options: GlobOptions = {}): RegExp {
  const body = pattern.replace(/^\//, "");
  let re = "";
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (ch === "*" && body[i + 1] === "*") {
      const slash = body[i + 2] === "/";
      re += slash ? "(?:.*/)?" : ".*";
      i += slash ? 2 : 1;
    } else if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  const start = (options.anchored ?? true) ? "^" : "(?:^|/)";
  return new RegExp(`${start}${re}${options.matchChildren ? "(?:/.*)?" : ""}$`);
}
