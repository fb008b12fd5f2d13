/**
 * `.parallelicignore`: gitignore syntax (`*`, `**`, `?`, trailing `/` for
 * folders, leading `/` to anchor, `!` to re-include, `#` comments).
 *
 * @module
 */
import { globToRegExp } from "../core/glob.ts";

/** Returns a predicate for paths (relative, `/`-separated) that the rules ignore. */
export function parseIgnore(text: string): (path: string, isDir: boolean) => boolean {
  const rules = text.split("\n").map((l) => l.trim()).filter((l) => l && !l.startsWith("#")).map((line) => {
    const negate = line.startsWith("!");
    let pattern = negate ? line.slice(1) : line;
    const dirOnly = pattern.endsWith("/");
    if (dirOnly) pattern = pattern.slice(0, -1);
    // Anchored when it starts with '/' or holds a '/' before its end, as in gitignore.
    const anchored = pattern.startsWith("/") || pattern.includes("/");
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
