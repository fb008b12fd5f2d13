/**
 * API routes the web UI needs beyond the core ones: instance states one
 * letter each (for a grid of 10,000 instances).
 *
 * @module
 */
import type { Hono } from "hono";
import type { PackageLimits } from "../core/package.ts";
import { type InstanceStatesView, STATE_LETTERS } from "../core/schema.ts";
import { instanceState, loadTask, readInstanceRecords } from "./access.ts";
import type { TokenCache } from "./auth.ts";
import type { GatewayDeps, GatewayEnv } from "./context.ts";
import { wholeQuery } from "./params.ts";

/** Options of {@linkcode addUiApi}. */
export interface UiApiOptions {
  limits: PackageLimits;
  /** Ends the live event streams. */
  signal?: AbortSignal;
  /** The guard's token cache: a stream ends when its token is revoked. */
  tokens: TokenCache;
  /** Where uploaded packages are spooled (see `GatewayOptions.spoolDir`). */
  spoolDir?: string;
}

/** Most instance states one `/states` answer carries. */
export const MAX_STATES_PAGE = 100_000;

/** Adds `GET /api/v1/tasks/{id}/states`. */
export function addUiApi(app: Hono<GatewayEnv>, deps: GatewayDeps, _options: UiApiOptions): void {
  const { kv } = deps;

  app.get("/api/v1/tasks/:id/states", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    // A page past the last instance is empty (not a range read backwards).
    const from = wholeQuery(c.req.query("from"), "from", { fallback: 0, max: task.spec.instances });
    const limit = wholeQuery(c.req.query("limit"), "limit", {
      fallback: MAX_STATES_PAGE,
      min: 1,
      max: MAX_STATES_PAGE,
    });
    const to = Math.min(task.spec.instances, from + limit);
    const records = await readInstanceRecords(kv, task.id, from, to);
    let states = "";
    for (let i = from; i < to; i++) states += STATE_LETTERS[instanceState(task, records.get(i) ?? null)];
    return c.json({ from, total: task.spec.instances, states } satisfies InstanceStatesView);
  });
}
