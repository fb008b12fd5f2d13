/**
 * Overrides at submit: a TOML fragment laid over a package's task.toml, so
 * that one package serves as a template (`--set task.instances=5`). Tables
 * merge (`[env]` keeps its other keys); a value replaces (a matrix axis, a
 * list, a label); `task.instances` and `task.matrix` replace each other.
 *
 * @module
 */
import { parse, TomlError } from "smol-toml";
import { ValidationError } from "./errors.ts";

/** Largest overrides fragment accepted, in bytes (as task.toml). */
export const MAX_OVERRIDES_BYTES = 64 * 1024;

/** Depth down to which tables merge: `[task]`, `[task.matrix]`, `[placement.labels]`; below, values replace. */
const MERGE_DEPTH = 2;

type Table = Record<string, unknown>;
const isTable = (v: unknown): v is Table => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * Parses an overrides fragment.
 *
 * @throws {ValidationError} When it is not TOML, or too large.
 */
export function parseOverrides(text: string): Table {
  if (text.length > MAX_OVERRIDES_BYTES) {
    throw new ValidationError(`task.toml overrides: are ${text.length} bytes, more than ${MAX_OVERRIDES_BYTES}`, {
      code: "invalid_overrides",
    });
  }
  try {
    return parse(text) as Table;
  } catch (e) {
    if (!(e instanceof TomlError)) throw e;
    throw new ValidationError(
      `task.toml overrides: line ${e.line} is not valid TOML: ${e.message.split("\n")[0]}`,
      { code: "invalid_overrides" },
    );
  }
}

/** task.toml's `[task]` keys that exclude each other: one given in the overrides replaces the other of task.toml. */
const EXCLUSIVE: ReadonlyArray<readonly [string, string]> = [["instances", "matrix"], ["matrix", "instances"]];

/** A task.toml table with `over` laid over it (neither is changed). */
export function mergeOverrides(base: Table, over: Table): Table {
  const task = isTable(base.task) && isTable(over.task) ? { ...base.task } : undefined;
  if (task) { for (const [given, dropped] of EXCLUSIVE) if (given in (over.task as Table)) delete task[dropped]; }
  return mergeTables(task ? { ...base, task } : base, over, 0);
}

function mergeTables(base: Table, over: Table, depth: number): Table {
  const out: Table = { ...base };
  for (const [key, value] of Object.entries(over)) {
    out[key] = depth < MERGE_DEPTH && isTable(value) && isTable(out[key])
      ? mergeTables(out[key] as Table, value, depth + 1)
      : value;
  }
  return out;
}

/**
 * Turns `--set KEY=VALUE` pairs into a TOML fragment: `KEY` is a dotted key
 * (`task.matrix.frame`), `VALUE` a TOML value (`5`, `{from=1,to=48}`,
 * `["a","b"]`), or else taken as a string (`env.Q=high`).
 *
 * @throws {ValidationError} Naming the pair that is wrong.
 */
export function overridesFromPairs(pairs: readonly string[]): string {
  const lines: string[] = [];
  for (const pair of pairs) {
    const eq = pair.indexOf("=");
    const key = eq > 0 ? pair.slice(0, eq).trim() : "";
    if (!/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/.test(key)) {
      throw new ValidationError(
        `Cannot read '--set ${pair}': give KEY=VALUE with a dotted task.toml key, e.g. task.instances=5`,
        { code: "invalid_overrides" },
      );
    }
    const raw = pair.slice(eq + 1).trim();
    let value = raw;
    try {
      parse(`v = ${raw}`);
    } catch {
      value = JSON.stringify(raw);
    }
    lines.push(`${key} = ${value}`);
  }
  const text = lines.join("\n") + "\n";
  parseOverrides(text);
  return text;
}
