/**
 * A small, strict command-line parser: `--key value`, `--key=value`,
 * `--flag`, `--no-flag`; an unknown flag is an error that names it.
 *
 * @module
 */
import { ValidationError } from "../core/errors.ts";
import { parseBytes } from "../core/task_toml_values.ts";

/** How each flag is read. */
export type FlagSpec = Record<string, "string" | "boolean" | "list">;

/** Parsed arguments. */
export interface Parsed {
  /** Positional arguments. */
  _: string[];
  /** Flags by name. */
  flags: Record<string, string | boolean | string[] | undefined>;
}

/**
 * Parses `argv` by `spec`.
 *
 * @param command The subcommand (`status`), named in the error on an unknown flag.
 * @throws {ValidationError} On an unknown flag or a missing value.
 */
export function parseArgs(argv: string[], spec: FlagSpec, command?: string): Parsed {
  const out: Parsed = { _: [], flags: {} };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--") {
      out._.push(...argv.slice(i + 1));
      break;
    }
    if (!arg.startsWith("--") || arg === "-") {
      if (/^-[a-zA-Z]$/.test(arg) && spec[arg.slice(1)]) {
        i = take(arg.slice(1), undefined, i);
        continue;
      }
      out._.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    let name = eq >= 0 ? arg.slice(2, eq) : arg.slice(2);
    const inline = eq >= 0 ? arg.slice(eq + 1) : undefined;
    if (!spec[name] && name.startsWith("no-") && spec[name.slice(3)] === "boolean") {
      name = name.slice(3);
      out.flags[name] = false;
      continue;
    }
    i = take(name, inline, i);
  }
  return out;

  function take(name: string, inline: string | undefined, i: number): number {
    const kind = spec[name];
    if (!kind) {
      throw new ValidationError(
        `Unknown flag '--${name}'${command ? ` for 'parallelic ${command}'` : ""}: known flags are ${
          Object.keys(spec).map((k) => `--${k}`).join(", ")
        }${command ? ` ('parallelic ${command} --help' explains them)` : ""}`,
      );
    }
    if (kind === "boolean") {
      out.flags[name] = inline === undefined ? true : !["false", "0", "no"].includes(inline);
      return i;
    }
    let value = inline;
    if (value === undefined) {
      value = argv[i + 1];
      if (value === undefined) throw new ValidationError(`Flag '--${name}' needs a value`);
      i++;
    }
    if (kind === "list") out.flags[name] = [...((out.flags[name] as string[]) ?? []), value];
    else out.flags[name] = value;
    return i;
  }
}

/** Reads an integer flag. */
export function intFlag(parsed: Parsed, name: string, fallback?: number): number | undefined {
  return intValue(parsed.flags, name) ?? fallback;
}

/** Reads flag `name` of `flags` (parsed, or a resolved configuration's values) as a whole number. */
export function intValue(flags: Readonly<Record<string, unknown>>, name: string): number | undefined {
  const v = flags[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new ValidationError(`Flag '--${name}' must be a whole number: got '${v}'`);
  return n;
}

/** Reads a size flag (`10GiB`, `500MB`, `1048576`) in bytes. */
export function sizeFlag(parsed: Parsed, name: string): number | undefined {
  const v = parsed.flags[name];
  if (v === undefined) return undefined;
  try {
    return parseBytes(String(v));
  } catch {
    throw new ValidationError(`Flag '--${name}' must be a size such as 10GiB or 500MB: got '${v}'`);
  }
}
