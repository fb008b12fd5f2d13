/**
 * The value syntaxes task.toml (and the CLI's flags and config) share:
 * sizes (`"512MiB"`), durations (`"1h30m"`) and paths relative to the task
 * root.
 *
 * @module
 */

const SIZE_UNITS: Record<string, number> = {
  "": 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};
const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1e3, m: 60e3, h: 3600e3, d: 86400e3 };

/**
 * Parses a size such as `"512MiB"`, `"2GB"` or `1024` into bytes.
 *
 * @throws {Error} When the text is not a size.
 */
export function parseBytes(value: string | number): number {
  if (typeof value === "number") return value;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$/.exec(value);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  if (!m || unit === undefined) {
    throw new Error(`'${value}' is not a size (e.g. "512MiB", "2GB")`);
  }
  return Math.round(Number(m[1]) * unit);
}

/**
 * Parses a duration such as `"10m"`, `"1h30m"`, `"500ms"` or a number of
 * seconds into milliseconds.
 *
 * @throws {Error} When the text is not a duration.
 */
export function parseDurationMs(value: string | number): number {
  if (typeof value === "number") return Math.round(value * 1000);
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d)/gy;
  let total = 0;
  let matched = 0;
  for (let m = re.exec(value); m; m = re.exec(value)) {
    total += Number(m[1]) * DURATION_UNITS[m[2]];
    matched = re.lastIndex;
  }
  if (matched === 0 || matched !== value.length) {
    throw new Error(`'${value}' is not a duration (e.g. "90s", "10m", "1h30m")`);
  }
  return Math.round(total);
}

/**
 * Normalizes a path relative to the task root; returns null when it is
 * absolute or leaves the root.
 */
export function normalizeRelative(path: string): string | null {
  if (path.startsWith("/") || path.startsWith("\\") || /^[A-Za-z]:/.test(path)) return null;
  const out: string[] = [];
  for (const part of path.split(/[\\/]+/)) {
    if (part === "" || part === ".") continue;
    if (part === "..") {
      if (out.length === 0) return null;
      out.pop();
    } else out.push(part);
  }
  return out.length ? out.join("/") : ".";
}
