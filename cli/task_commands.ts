/**
 * Commands that follow or change a task after its submit: wait, rerun, set,
 * hold, release.
 *
 * @module
 */
import { ValidationError } from "../core/errors.ts";
import { parseDurationMs } from "../core/task_toml_values.ts";
import type { Client } from "./client.ts";
import { countsLine, printHint, summaryLine, waitFor } from "./commands.ts";

/**
 * Parses an index list such as `3,7-9` into `[3, 7, 8, 9]`.
 *
 * @throws {ValidationError} On anything else, naming the part.
 */
export function parseIndexList(text: string, max = 100_000): number[] {
  const out = new Set<number>();
  for (const part of text.split(",")) {
    const m = /^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$/.exec(part);
    const from = m ? Number(m[1]) : NaN;
    const to = m?.[2] !== undefined ? Number(m[2]) : from;
    if (!m || to < from) {
      throw new ValidationError(
        `Cannot read '${part}' of '--instances ${text}': give indexes and ranges such as 3,7-9`,
      );
    }
    if (out.size + to - from + 1 > max) {
      throw new ValidationError(`'--instances ${text}' names more than ${max} instances: use --failed`);
    }
    for (let i = from; i <= to; i++) out.add(i);
  }
  return [...out].sort((a, b) => a - b);
}

/** What `parallelic rerun` reruns: exactly one of its choices. */
export interface RerunChoice {
  failed?: boolean;
  instances?: string;
  finalize?: boolean;
}

/** `parallelic rerun ID [--failed | --instances 3,7-9 | --finalize]` */
export async function rerun(client: Client, id: string, choice: RerunChoice): Promise<number> {
  // Without a choice it reruns what did not succeed.
  const given = [choice.failed, choice.instances !== undefined, choice.finalize].filter(Boolean).length;
  if (given > 1) {
    throw new ValidationError("Usage: parallelic rerun ID [--failed | --instances 3,7-9 | --finalize]: choose one");
  }
  const body = choice.finalize
    ? { finalize: true }
    : { instances: choice.instances !== undefined ? parseIndexList(choice.instances) : "failed" };
  const res = await client.json<{ id: string; state: string; instances: number; finalize: boolean }>(
    `/api/v1/tasks/${id}/rerun`,
    { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) },
  );
  const what = res.instances > 0 ? `${res.instances} instance${res.instances === 1 ? "" : "s"} run again` : "";
  const fin = res.finalize
    ? res.instances > 0 ? "finalize runs again once every instance succeeded" : "finalize runs again"
    : "";
  console.log(`Task ${res.id} ${res.state}: ${[what, fin].filter(Boolean).join("; ")}`);
  console.error(`Follow it: parallelic wait ${res.id}, or parallelic status ${res.id}`);
  return 0;
}

/** What `PATCH /api/v1/tasks/{id}` answers. */
interface Updated {
  id: string;
  state: string;
  priority: number;
  held: boolean;
}

async function update(client: Client, id: string, body: { priority?: number; held?: boolean }): Promise<Updated> {
  return await client.json<Updated>(`/api/v1/tasks/${id}`, {
    method: "PATCH",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
}

/**
 * Reads `set`'s `KEY=VALUE` pairs: `priority=0..100`, `held=true|false`.
 *
 * @throws {ValidationError} Naming the pair that is wrong.
 */
export function parseSettings(pairs: string[]): { priority?: number; held?: boolean } {
  const out: { priority?: number; held?: boolean } = {};
  if (pairs.length === 0) throw new ValidationError("Usage: parallelic set ID priority=80 [held=true|false]");
  for (const pair of pairs) {
    const [key, value] = pair.split(/=(.*)/s);
    if (key === "priority" && /^\d+$/.test(value ?? "") && Number(value) <= 100) out.priority = Number(value);
    else if (key === "held" && (value === "true" || value === "false")) out.held = value === "true";
    else if (key === "priority" || key === "held") {
      throw new ValidationError(
        `Cannot set '${pair}': ${key === "priority" ? "priority is a whole number 0-100" : "held is true or false"}`,
      );
    } else throw new ValidationError(`Cannot set '${pair}': a running task's priority=N or held=true|false changes`);
  }
  return out;
}

/** `parallelic set ID priority=80` */
export async function setTask(client: Client, id: string, pairs: string[]): Promise<number> {
  const res = await update(client, id, parseSettings(pairs));
  console.log(`Task ${res.id} ${res.state}: priority ${res.priority}${res.held ? ", held" : ""}`);
  return 0;
}

/** `parallelic hold ID` and `parallelic release ID` */
export async function holdTask(client: Client, id: string, held: boolean): Promise<number> {
  const res = await update(client, id, { held });
  console.log(
    held
      ? `Task ${res.id} held: nothing new is dispatched, what runs goes on (parallelic release ${res.id})`
      : `Task ${res.id} released: ${res.state}`,
  );
  return 0;
}

/** `parallelic wait`'s exit codes by final state; 3 when it timed out waiting. */
export const WAIT_EXIT: Readonly<Record<string, number>> = { succeeded: 0, failed: 1, cancelled: 2 };

/** `parallelic wait ID [--timeout 1h]`: until the task ends; its summary line; the exit code of its state. */
export async function waitTask(
  client: Client,
  id: string,
  timeout: string | undefined,
  json: boolean,
): Promise<number> {
  let timeoutMs = Infinity;
  if (timeout !== undefined) {
    try {
      timeoutMs = parseDurationMs(timeout);
    } catch {
      throw new ValidationError(`Flag '--timeout' must be a duration such as 90s, 10m or 1h: got '${timeout}'`);
    }
  }
  const until = Date.now() + timeoutMs;
  const task = await waitFor(client, id, !json, until);
  // With --json, stdout is the task alone.
  const say = json ? console.error : console.log;
  if (json) console.log(JSON.stringify(task, null, 2));
  if (!Object.hasOwn(WAIT_EXIT, task.state)) {
    say(`Task ${task.id} still ${task.state} after ${timeout}: ${countsLine(task)}`);
    return 3;
  }
  say(summaryLine(task));
  printHint(task);
  return WAIT_EXIT[task.state];
}
