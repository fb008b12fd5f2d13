/**
 * List inputs: `[task] inputs = "FILE"` makes one instance per row of a file
 * in the package. A `.csv` file (a header row, then one row per instance) or
 * a `.jsonl` file (one JSON object per line) gives each instance its
 * `PARALLELIC_PARAM_<COLUMN>`; any other file gives each non-empty line's
 * text as `PARALLELIC_INPUT`. The rows are read from the package wherever
 * they are needed (at submit to check and count them, on the node to run
 * them), never stored per instance.
 *
 * @module
 */
import { ValidationError } from "./errors.ts";
import type { InputsSpec, ParamValue } from "./schema.ts";

/** Largest inputs file accepted, in bytes. */
export const MAX_INPUTS_BYTES = 64 * 2 ** 20;
/** Longest row (a line of text, a CSV record, a JSON line), in characters. */
export const MAX_INPUT_ROW_CHARS = 64 * 1024;

/** The rows of an inputs file: one per instance. */
export type InputRows =
  | { format: "lines"; rows: string[] }
  | { format: "csv" | "jsonl"; rows: Array<Record<string, ParamValue>> };

/** The format a file's name says: `.csv`, `.jsonl` (or `.ndjson`), else lines of text. */
export function inputsFormat(path: string): InputsSpec["format"] {
  if (/\.csv$/i.test(path)) return "csv";
  if (/\.(jsonl|ndjson)$/i.test(path)) return "jsonl";
  return "lines";
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * Parses an inputs file.
 *
 * @param text The file's text.
 * @param inputs Its path in the package (named in errors) and format.
 * @param maxRows Most rows accepted (the instance limit).
 * @throws {ValidationError} Naming the file and the line.
 */
export function parseInputs(text: string, inputs: Pick<InputsSpec, "path" | "format">, maxRows: number): InputRows {
  const fail = (line: number, message: string): never => {
    throw new ValidationError(`task.toml: inputs '${inputs.path}'${line ? ` line ${line}` : ""}: ${message}`, {
      code: "invalid_inputs",
    });
  };
  const tooMany = () => fail(0, `has more than ${maxRows} rows, the most instances one task may have`);
  const long = (line: number, chars: number) =>
    chars > MAX_INPUT_ROW_CHARS && fail(line, `is ${chars} characters long, more than ${MAX_INPUT_ROW_CHARS}`);
  let result: InputRows;
  if (inputs.format === "csv") {
    result = { format: "csv", rows: csvRows(text, fail, maxRows, tooMany, long) };
  } else {
    const lines = text.split("\n");
    const rows: Array<string | Record<string, ParamValue>> = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i].endsWith("\r") ? lines[i].slice(0, -1) : lines[i];
      if (line.trim() === "") continue;
      long(i + 1, line.length);
      if (rows.length >= maxRows) tooMany();
      rows.push(inputs.format === "lines" ? line : jsonRow(line, i + 1, fail));
    }
    result = inputs.format === "lines"
      ? { format: "lines", rows: rows as string[] }
      : { format: "jsonl", rows: rows as Array<Record<string, ParamValue>> };
  }
  if (result.rows.length === 0) fail(0, "has no rows: it must give at least one instance");
  return result;
}

/** Checks a JSON line: an object of strings, numbers and booleans whose keys are distinct variable names. */
function jsonRow(line: string, n: number, fail: (line: number, message: string) => never): Record<string, ParamValue> {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch (e) {
    fail(n, `is not JSON (${(e as Error).message})`);
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) fail(n, "is not a JSON object");
  const row = value as Record<string, unknown>;
  const seen = new Map<string, string>();
  for (const [key, v] of Object.entries(row)) {
    if (!ENV_NAME.test(key)) fail(n, `key '${key}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)`);
    checkParamName(key, seen, (m) => fail(n, m));
    if (typeof v !== "string" && typeof v !== "number" && typeof v !== "boolean") {
      fail(n, `key '${key}' holds ${JSON.stringify(v)?.slice(0, 40)}: values are strings, numbers or booleans`);
    }
  }
  return row as Record<string, ParamValue>;
}

/** Refuses a second name that gives the same `PARALLELIC_PARAM_<NAME>` once upper-cased. */
function checkParamName(name: string, seen: Map<string, string>, fail: (message: string) => never) {
  const env = name.toUpperCase();
  const before = seen.get(env);
  if (before !== undefined) fail(`'${before}' and '${name}' both name PARALLELIC_PARAM_${env}`);
  seen.set(env, name);
}

/**
 * Reads CSV (RFC 4180: fields in double quotes may hold commas, quotes doubled
 * and line breaks): a header row of variable names, then one row per
 * instance with as many fields. Blank lines are skipped.
 */
function csvRows(
  text: string,
  fail: (line: number, message: string) => never,
  maxRows: number,
  tooMany: () => never,
  long: (line: number, chars: number) => void,
): Array<Record<string, ParamValue>> {
  let header: string[] | null = null;
  const rows: Array<Record<string, ParamValue>> = [];
  let at = 0;
  let line = 1;
  while (at < text.length) {
    const startLine = line;
    const start = at;
    const fields: string[] = [];
    for (;;) {
      let field = "";
      if (text[at] === '"') {
        at++;
        for (;;) {
          if (at >= text.length) fail(startLine, "has a quoted field that is never closed");
          const c = text[at++];
          if (c === '"') {
            if (text[at] === '"') {
              field += '"';
              at++;
            } else break;
          } else {
            if (c === "\n") line++;
            field += c;
          }
        }
        if (at < text.length && text[at] !== "," && text[at] !== "\n" && text[at] !== "\r") {
          fail(line, 'has text after a closing quote (a quote inside a field is written twice: "")');
        }
      } else {
        while (at < text.length && text[at] !== "," && text[at] !== "\n" && text[at] !== "\r") field += text[at++];
      }
      fields.push(field);
      if (text[at] === ",") {
        at++;
        continue;
      }
      if (text[at] === "\r") at++;
      if (text[at] === "\n") {
        at++;
        line++;
      }
      break;
    }
    long(startLine, at - start);
    if (fields.length === 1 && fields[0].trim() === "") continue;
    if (header === null) {
      const seen = new Map<string, string>();
      for (const name of fields) {
        if (!ENV_NAME.test(name)) {
          fail(startLine, `header '${name}' is not a variable name ([A-Za-z_][A-Za-z0-9_]*)`);
        }
        checkParamName(name, seen, (m) => fail(startLine, `headers ${m}`));
      }
      header = fields;
      continue;
    }
    if (fields.length !== header.length) {
      fail(startLine, `has ${fields.length} fields, the header has ${header.length}`);
    }
    if (rows.length >= maxRows) tooMany();
    const row: Record<string, ParamValue> = {};
    header.forEach((name, i) => row[name] = fields[i]);
    rows.push(row);
  }
  return rows;
}

/** The environment an instance gets from its row. */
export function inputEnv(rows: InputRows, index: number): Record<string, string> {
  if (rows.format === "lines") return { PARALLELIC_INPUT: rows.rows[index] ?? "" };
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(rows.rows[index] ?? {})) env[`PARALLELIC_PARAM_${k.toUpperCase()}`] = String(v);
  return env;
}

/** An instance's parameters as the API shows them: its row (a line of text as `input`). */
export function inputParams(rows: InputRows, index: number): Record<string, ParamValue> {
  if (rows.format === "lines") return { input: rows.rows[index] ?? "" };
  return { ...rows.rows[index] };
}
