/**
 * Strict reading of path and query parameters and JSON bodies: a number is canonical
 * decimal (`0x1`, `1.0`, `+1`, `01` and `1e0` are refused, not read as 1),
 * a yes/no flag is one of a few words, a node name is what nodes are named.
 * Each refusal is a 400 naming the parameter, what it got and what to send.
 *
 * @module
 */
import type { Context } from "hono";
import type { z } from "zod";
import { NotFoundError, ValidationError } from "../core/errors.ts";
import { NodeName, type TaskRecord } from "../core/schema.ts";

/** A whole number as the API writes it: no sign, leading zero, fraction or exponent. */
const CANONICAL_WHOLE = /^(0|[1-9][0-9]{0,15})$/;

/** Shows at most 64 characters of what the caller sent, as JSON would (so controls are visible). */
export const shown = (raw: string) => JSON.stringify(raw.length > 64 ? `${raw.slice(0, 64)}…` : raw).slice(1, -1);

/**
 * Reads a whole number in canonical decimal, or null when `raw` is not one.
 * Numbers above 2^53 are not whole numbers here either.
 */
export function canonicalWhole(raw: string): number | null {
  if (!CANONICAL_WHOLE.test(raw)) return null;
  const n = Number(raw);
  return Number.isSafeInteger(n) ? n : null;
}

/** Options of {@linkcode wholeQuery}. */
export interface WholeQueryOptions {
  /** When the parameter is absent. */
  fallback: number;
  /** Smallest value taken; a smaller one is raised to it. @default {0} */
  min?: number;
  /** Largest value taken; a larger one is lowered to it (a page size asked too large). */
  max?: number;
}

/**
 * Reads query parameter `name` as a whole number, kept within `min`..`max`.
 *
 * @throws {ValidationError} `invalid_parameter` when it is there but not canonical decimal.
 */
export function wholeQuery(raw: string | undefined, name: string, options: WholeQueryOptions): number {
  if (raw === undefined) return options.fallback;
  const n = canonicalWhole(raw);
  if (n === null) {
    throw new ValidationError(
      `Cannot read query parameter '${name}' = '${shown(raw)}': give a whole number in decimal ` +
        `(digits only: no sign, leading zero, fraction or exponent)`,
      { code: "invalid_parameter" },
    );
  }
  return Math.min(Math.max(n, options.min ?? 0), options.max ?? Number.MAX_SAFE_INTEGER);
}

const YES = new Set(["1", "true", "yes"]);
const NO = new Set(["", "0", "false", "no"]);

/**
 * Reads a yes/no query parameter (`1`, `true`, `yes` or `0`, `false`, `no`; absent is no).
 *
 * @throws {ValidationError} `invalid_parameter` for any other word.
 */
export function flagQuery(raw: string | undefined, name: string): boolean {
  if (raw === undefined || NO.has(raw)) return false;
  if (YES.has(raw)) return true;
  throw new ValidationError(
    `Cannot read query parameter '${name}' = '${shown(raw)}': give 1, true or yes (or 0, false, no)`,
    { code: "invalid_parameter" },
  );
}

/**
 * Reads the `state` filter of an instance list: absent (every instance) or `failed`.
 *
 * @throws {ValidationError} `invalid_parameter` for anything else.
 */
export function stateQuery(raw: string | undefined): "failed" | undefined {
  if (raw === undefined || raw === "failed") return raw;
  throw new ValidationError(
    `Cannot read query parameter 'state' = '${shown(raw)}': give failed (or leave it out for every instance)`,
    { code: "invalid_parameter" },
  );
}

/**
 * Reads how a log is asked for: `format` (`text`, the default, or `ndjson`),
 * `attempt` (only that attempt's output) and `after` (resume after that log
 * sequence).
 *
 * @throws {ValidationError} `invalid_parameter` for a format not named or a number not whole.
 */
export function logQuery(
  format: string | undefined,
  attempt: string | undefined,
  after: string | undefined,
): { format: "text" | "ndjson"; attempt?: number; afterSeq?: number } {
  if (format !== undefined && format !== "text" && format !== "ndjson") {
    throw new ValidationError(
      `Cannot read query parameter 'format' = '${shown(format)}': give text or ndjson`,
      { code: "invalid_parameter" },
    );
  }
  const whole = (raw: string | undefined, name: string) =>
    raw === undefined ? undefined : wholeQuery(raw, name, { fallback: 0, max: Number.MAX_SAFE_INTEGER });
  return { format: format ?? "text", attempt: whole(attempt, "attempt"), afterSeq: whole(after, "after") };
}

/**
 * Reads a task list's search (`q`: words that must each be in the task's
 * name or owner, or the start of its id; any case) and its cursor (`before`:
 * the id of the last task of the page before).
 *
 * @throws {ValidationError} `invalid_parameter` for a cursor that is not a task id, or a search over 200 characters.
 */
export function taskSearch(
  q: string | undefined,
  before: string | undefined,
): { matches: (t: { id: string; name: string; owner: string }) => boolean; before?: string } {
  if (before !== undefined && !/^t[0-9a-z]{16}$/.test(before)) {
    throw new ValidationError(
      `Cannot read query parameter 'before' = '${shown(before)}': give the id of a task (from 'next')`,
      { code: "invalid_parameter" },
    );
  }
  if (q !== undefined && q.length > 200) {
    throw new ValidationError(`Cannot search for ${q.length} characters: give at most 200`, {
      code: "invalid_parameter",
    });
  }
  const words = (q ?? "").toLowerCase().split(/\s+/).filter((w) => w !== "");
  const matches = (t: { id: string; name: string; owner: string }) => {
    const text = `${t.name} ${t.owner}`.toLowerCase();
    return words.every((w) => text.includes(w) || t.id.startsWith(w));
  };
  return { matches, before };
}

/**
 * Reads an instance index of `task`: canonical decimal below its instance
 * count, or `finalize` when it has a [finalize] step (the extra instance
 * numbered `instances`).
 *
 * @throws {ValidationError} `invalid_parameter` when it is not canonical decimal.
 * @throws {NotFoundError} `instance_not_found` when the task has no such instance.
 */
export function instanceIndex(task: TaskRecord, raw: string): number {
  if (raw === "finalize" && task.spec.finalize) return task.spec.instances;
  const index = canonicalWhole(raw);
  if (index === null && raw !== "finalize") {
    throw new ValidationError(
      `Cannot read instance index '${shown(raw)}': give a whole number in decimal (digits only: no sign, ` +
        `leading zero, fraction or exponent)${task.spec.finalize ? " or 'finalize'" : ""}`,
      { code: "invalid_parameter" },
    );
  }
  if (index === null || index >= task.spec.instances) {
    throw new NotFoundError(
      `Task '${task.id}' has no instance '${shown(raw)}': it has instances 0 to ${task.spec.instances - 1}`,
      { code: "instance_not_found" },
    );
  }
  return index;
}

/**
 * Checks a node name from a path.
 *
 * @throws {ValidationError} `invalid_node_name` when it is not one a node can have.
 */
export function nodeNameParam(raw: string): string {
  const parsed = NodeName.safeParse(raw);
  if (!parsed.success) {
    throw new ValidationError(`Cannot use node name '${shown(raw)}' as ${parsed.error.issues[0].message}`, {
      code: "invalid_node_name",
    });
  }
  return parsed.data;
}

/** Parses a JSON body against `schema`, as a 400 that says what is wrong. */
export async function readJson<S extends z.ZodType>(c: Context, schema: S): Promise<z.output<S>> {
  let body: unknown;
  try {
    body = await c.req.json();
  } catch (e) {
    if ((e as Error).name === "TooLargeError") throw e;
    throw new ValidationError(`Cannot read request body as it is not JSON (${(e as Error).message})`, {
      code: "invalid_json",
    });
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ValidationError(`Cannot accept request as field '${issue.path.join(".")}' is invalid: ${issue.message}`, {
      code: "invalid_request",
    });
  }
  return parsed.data;
}
