// @ts-check
/**
 * `.parallelicignore`: gitignore syntax (`*`, `**`, `?`, trailing `/` for
 * folders, leading `/` to anchor, `!` to re-include, `#` comments).
 *
 * Plain JavaScript with JSDoc types, because the web UI's browser script
 * uses it too (served at `/ui/ignore.js`, beside `/ui/glob.js`) when it zips
 * a folder. Kept by hand rather than npm:ignore as that package ships
 * CommonJS only, which a browser cannot import without a build step, and one
 * reader in both places keeps the CLI and the web UI leaving out the same files.
 *
 * @module
 */
import { globToRegExp } from "./glob.js";

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
    // gitignore: a pattern with a `/` before its end is anchored at the root; one without matches in any folder.
    const anchored = pattern.startsWith("/") || pattern.slice(0, -1).includes("/");
    return { negate, dirOnly, re: globToRegExp(pattern, { anchored, matchChildren: true }) };
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
