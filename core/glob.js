// @ts-check
/**
 * Glob patterns over relative, `/`-separated paths: `*` (within one folder),
 * `**` (any number of folders), `?` (one character). The one pattern
 * reader of `.parallelicignore` (gitignore rules, `core/ignore.js`) and
 * task.toml `[outputs] paths`.
 *
 * Kept by hand rather than npm:picomatch for the reason `core/ignore.js`
 * is: the web UI's browser script reads `.parallelicignore` with it too,
 * served as it is at `/ui/glob.js` (no build step), and picomatch ships
 * CommonJS only. Plain JavaScript with JSDoc types for the same reason.
 *
 * @module
 */

/**
 * Options of {@linkcode globToRegExp}.
 *
 * @typedef {object} GlobOptions
 * @property {boolean} [anchored] Match from the start of the path only; otherwise at any folder boundary. Default true.
 * @property {boolean} [matchChildren] Also match everything below a matching folder (`out` matches `out/a.txt`). Default false.
 */

/**
 * Turns a glob pattern into a regular expression over relative paths.
 *
 * @example
 * ```ts
 * globToRegExp("out/**").test("out/a/b.txt"); // true
 * globToRegExp("*.log").test("x/y.log"); // false: anchored, and `*` stays in one folder
 * ```
 *
 * @param {string} pattern
 * @param {GlobOptions} [options]
 * @returns {RegExp}
 */
export function globToRegExp(pattern, options = {}) {
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
