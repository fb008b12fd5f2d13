/**
 * Routes that change a task after its submit: rerun it in place once it
 * ended; change its priority, hold or release it while it runs.
 *
 * @module
 */
import { Hono } from "hono";
import { z } from "zod";
import { unwrap } from "../../core/bus.ts";
import { AuthError, NotFoundError } from "../../core/errors.ts";
import { State, taskRerun, taskUpdate, type TokenRecord } from "../../core/schema.ts";
import { loadTask } from "../access.ts";
import { requireRole } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { clientAddress } from "../guard.ts";
import { readJson } from "../params.ts";

/** Most indexes one rerun may list (a message stays well under NATS' payload limit): rerun more with "failed". */
export const MAX_RERUN_INDEXES = 100_000;

/** `POST /api/v1/tasks/{id}/rerun` body. */
export const RerunBody = z.strictObject({
  instances: z.union([
    z.literal("failed"),
    z.array(z.number().int().nonnegative()).min(1).max(MAX_RERUN_INDEXES),
  ]).optional(),
  finalize: z.boolean().optional(),
});

/** `POST /api/v1/tasks/{id}/rerun` answer. */
export const RerunView = z.object({
  id: z.string(),
  state: State,
  /** How many instances run again. */
  instances: z.number().int().nonnegative(),
  /** True when the task's `[finalize]` runs again once every instance succeeded. */
  finalize: z.boolean(),
});

/** `PATCH /api/v1/tasks/{id}` body: at least one of its fields. */
export const UpdateBody = z.strictObject({
  priority: z.number().int().min(0).max(100).optional(),
  held: z.boolean().optional(),
}).refine((b) => b.priority !== undefined || b.held !== undefined, {
  message: 'give "priority" (0-100) and/or "held" (true or false)',
});

/** `PATCH /api/v1/tasks/{id}` answer. */
export const UpdateView = z.object({ id: z.string(), state: State, priority: z.number().int(), held: z.boolean() });

/**
 * Refuses a priority over the cap the manager sets for submitters (`--max-submitter-priority`); admins may give any.
 *
 * @throws {AuthError} `forbidden`, naming the cap.
 */
export function checkPriority(who: TokenRecord, priority: number, cap: number | undefined): void {
  if (cap === undefined || who.role === "admin" || priority <= cap) return;
  throw new AuthError(
    `Cannot give priority ${priority} as submitters may give at most ${cap} (the manager's ` +
      `--max-submitter-priority): use ${cap} or less, or ask an admin`,
    { code: "forbidden" },
  );
}

/** `PATCH /api/v1/tasks/{id}` and `POST /api/v1/tasks/{id}/rerun`. */
export function taskChangeRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { bus, kv, workspace, audit } = deps;
  const app = new Hono<GatewayEnv>();

  app.patch("/api/v1/tasks/:id", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "change a task");
    const task = await loadTask(kv, c.req.param("id"), who);
    const body = await readJson(c, UpdateBody);
    if (body.priority !== undefined) checkPriority(who, body.priority, deps.maxSubmitterPriority);
    const reply = unwrap(await bus.request(taskUpdate, { taskId: task.id, by: who.user, ...body }));
    const detail = [
      body.priority !== undefined ? `priority ${body.priority}` : "",
      body.held === true ? "held" : body.held === false ? "released" : "",
    ].filter(Boolean).join(", ");
    await audit.record({ action: "task.update", user: who.user, address: clientAddress(c), target: task.id, detail });
    return c.json({ id: task.id, state: reply.state, priority: reply.priority, held: reply.held });
  });

  app.post("/api/v1/tasks/:id/rerun", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "rerun a task");
    const task = await loadTask(kv, c.req.param("id"), who);
    const body = await readJson(c, RerunBody);
    if (Array.isArray(body.instances)) {
      const outside = body.instances.find((i) => i >= task.spec.instances);
      if (outside !== undefined) {
        throw new NotFoundError(
          `Cannot rerun instance ${outside} of task '${task.id}' as it has instances 0 to ${task.spec.instances - 1}`,
          { code: "instance_not_found" },
        );
      }
    }
    // Under the task's lock: it cannot be deleted meanwhile, and its package must still be there.
    const reply = await workspace.withTaskPackage(task.id, task.digest, async () =>
      unwrap(
        await bus.request(taskRerun, {
          taskId: task.id,
          by: who.user,
          instances: body.instances,
          finalize: body.finalize,
        }, { timeoutMs: 30_000 }),
      ));
    const what = body.instances === "failed"
      ? "failed instances"
      : body.instances
      ? `instances ${body.instances.slice(0, 20).join(",")}${body.instances.length > 20 ? ",…" : ""}`
      : "finalize";
    await audit.record({
      action: "task.rerun",
      user: who.user,
      address: clientAddress(c),
      target: task.id,
      detail: what,
    });
    return c.json({ id: task.id, state: reply.state, instances: reply.instances, finalize: reply.finalize });
  });

  return app;
}
