// @ts-check
/**
 * `.parallelicignore`: gitignore syntax (`*`, `**`, `?`, trailing `/` for
 * folders, leading `/` to anchor, `!` to re-include, `#` comments).
 *
 * Plain JavaScript with JSDoc types, because the web UI's browser script
 * uses it too (served at `/ui/ignore.js`) when it zips a folder.
 *
 * @module
 */

/**
 * Turns one gitignore pattern into a regular expression over relative paths.
 *
 * @param {string} pattern
 * @returns {RegExp}
 */
function toRegExp(pattern) {
  const anchored = pattern.startsWith("/") || pattern.slice(0, -1).includes("/");
  const body = pattern.replace(/^\//, "");
  let re = "";
  for (let i = 0; i < body.length; i++) {
    const ch = body[i];
    if (ch === "*" && body[i + 1] === "*") {
      re += body[i + 2] === "/" ? "(?:.*/)?" : ".*";
      i += body[i + 2] === "/" ? 2 : 1;
    } else if (ch === "*") re += "[^/]*";
    else if (ch === "?") re += "[^/]";
    else re += ch.replace(/[.+^${}()|[\]\\]/g, "\\$&");
  }
  return new RegExp(`${anchored ? "^" : "(?:^|/)"}${re}(?:/.*)?$`);
}

/**
 * Returns a predicate for paths (relative, `/`-separated) that the rules ignore.
 *
 * @param {string} text the contents of a `.parallelicignore` file
 * @returns {(path: string, isDir: boolean) => boolean}
 */
export function parseIgnore(text) {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map((line) => {
    const negate = line.startsWith("!");
    let pattern = negate ? line.slice(1) : line;
    const dirOnly = pattern.endsWith("/");
    if (dirOnly) pattern = pattern.slice(0, -1);
    return { negate, dirOnly, re: toRegExp(pattern) };
  });
  return (path, isDir) => {
    let ignored = false;
    for (const rule of rules) {
      // Folders are not descended into once ignored, so a folder rule never needs to match a file.
      if (rule.dirOnly && !isDir) continue;
      if (!rule.re.test(path)) continue;
      ignored = !rule.negate;
    }
    return ignored;
  };
}
