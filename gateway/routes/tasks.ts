/**
 * Routes for tasks: submit (and check a package without submitting it),
 * list, read, explain, cancel and delete. Reads come straight from Deno KV
 * (task records carry their counts, so no read scans instances); changes go
 * to the task actor over NATS.
 *
 * @module
 */
import { Hono } from "hono";
import { unwrap } from "../../core/bus.ts";
import { TooLargeError, ValidationError } from "../../core/errors.ts";
import { countTasks, notifyKey, taskKey, TASKS } from "../../core/kv.ts";
import {
  IdempotencyKey,
  type NotifyStatus,
  type NotifyView,
  type PackageCheckView,
  State,
  taskCancel,
  taskExplain,
  type TaskRecord,
  taskSubmit,
  type TaskView,
  type TokenRecord,
} from "../../core/schema.ts";
import { afterOf } from "../after.ts";
import { caller, canSee, loadTask } from "../access.ts";
import { requireRole } from "../auth.ts";
import type { GatewayEnv, RouteDeps } from "../context.ts";
import { clientAddress } from "../guard.ts";
import { instanceIndex, taskSearch, wholeQuery } from "../params.ts";
import { relatedOf } from "../related.ts";
import { placementWarnings } from "../submit_checks.ts";
import { checkUpload, readUpload } from "../upload.ts";
import { checkPriority } from "./task_changes.ts";

/**
 * Turns a task record into its API view. A webhook URL may carry its
 * receiver's token: only the task's owner and admins see more of it than its
 * origin.
 */
export function taskView(rec: TaskRecord, who: TokenRecord): TaskView {
  const { nextIndex: _, ...rest } = rec;
  const notify = rec.spec.notify;
  if (notify && who.role !== "admin" && who.user !== rec.owner) {
    return {
      ...rest,
      instances: rec.spec.instances,
      spec: { ...rec.spec, notify: { ...notify, url: originOf(notify) } },
    };
  }
  return { ...rest, instances: rec.spec.instances };
}

const originOf = (notify: { url: string }) => `${new URL(notify.url).origin}/…`;

/** A task's `[notify]` and how its notification went; null when it has no webhook. */
async function notifyView(kv: Deno.Kv, task: TaskView): Promise<NotifyView | null> {
  const notify = task.spec.notify;
  if (!notify) return null;
  const status = (await kv.get<NotifyStatus>(notifyKey(task.id))).value;
  return {
    url: notify.url,
    on: notify.on,
    ...status ?? { phase: "waiting", state: task.state, nextAt: null, deliveries: [] },
  };
}

/** The `Idempotency-Key` header's value, checked; undefined when there is none. */
function idempotencyKey(header: string | undefined): string | undefined {
  if (header === undefined) return undefined;
  const parsed = IdempotencyKey.safeParse(header);
  if (!parsed.success) {
    throw new ValidationError(
      `Cannot use Idempotency-Key '${header.slice(0, 40)}' as it is not ${parsed.error.issues[0].message}`,
      { code: "invalid_idempotency_key" },
    );
  }
  return parsed.data;
}

/** The `/api/v1/tasks` routes of a task as a whole, and `POST /api/v1/packages/check`. */
export function taskRoutes(deps: RouteDeps): Hono<GatewayEnv> {
  const { bus, kv, workspace, data, audit, limits, log } = deps;
  const app = new Hono<GatewayEnv>();
  const uploadBytes = deps.metrics.counter(
    "parallelic_upload_bytes_total",
    "Bytes of packages uploaded to the gateway.",
  );

  app.post("/api/v1/tasks", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "submit a task");
    // Checked before the upload is read: a bad key costs no upload.
    const key = idempotencyKey(c.req.header("idempotency-key"));
    await using upload = await readUpload(c, limits, deps.spoolDir);
    log.step("gateway.read");
    uploadBytes.inc({}, upload.size);
    const checked = await checkUpload(upload, limits);
    checked.spec.after = await afterOf(checked.spec.after, c.req.query("after"), (id) => loadTask(kv, id, who));
    checkPriority(who, checked.spec.priority, deps.maxSubmitterPriority);
    const strict = ["1", "true", "yes"].includes(c.req.query("strict") ?? "");
    const warnings = await placementWarnings(bus, checked.spec, strict);
    log.step("gateway.checked");
    // Data sets are pinned to versions, and the package stored, so that neither goes away before the task exists.
    const reply = await workspace.withPackage(checked.digest, async () => {
      await workspace.putPackage(checked.digest, upload);
      log.step("gateway.stored");
      return await data.submitWith(checked.spec, checked.taskToml, async (spec) =>
        unwrap(
          await bus.request(taskSubmit, {
            digest: checked.digest,
            packageBytes: checked.packageBytes,
            spec,
            owner: who.user,
            overrides: upload.overrides,
            // The task actor stores the audit entry in the same commit as the task.
            address: clientAddress(c),
            key,
          }),
        ), caller(who));
    });
    log.step("gateway.answered");
    // A repeat of a submit (same Idempotency-Key) answers the task the first one made: 200, not 201.
    const told = warnings.length > 0 ? { warnings } : {};
    if (reply.replayed) {
      return c.json({ id: reply.id, state: reply.state, instances: reply.instances, replayed: true, ...told });
    }
    return c.json({ id: reply.id, state: reply.state, instances: reply.instances, ...told }, 201);
  });

  app.get("/api/v1/tasks", async (c) => {
    const who = c.get("who");
    const stateParam = c.req.query("state");
    const parsedState = stateParam === undefined ? undefined : State.safeParse(stateParam);
    if (parsedState && !parsedState.success) {
      throw new ValidationError(
        `Cannot list tasks as state '${stateParam}' is not one of ${State.options.join(", ")}`,
        { code: "invalid_state" },
      );
    }
    const state = parsedState?.data;
    const limit = wholeQuery(c.req.query("limit"), "limit", { fallback: 100, min: 1, max: 1000 });
    const { matches, before } = taskSearch(c.req.query("q"), c.req.query("before"));
    const tasks: TaskView[] = [];
    let next: string | null = null;
    const selector = before ? { prefix: TASKS, end: taskKey(before) } : { prefix: TASKS };
    for await (const entry of kv.list<TaskRecord>(selector, { reverse: true, batchSize: 200 })) {
      const rec = entry.value;
      if (state && rec.state !== state) continue;
      if (!canSee(who, rec)) continue;
      if (!matches(rec)) continue;
      if (tasks.length >= limit) {
        next = tasks[tasks.length - 1].id;
        break;
      }
      tasks.push(taskView(rec, who));
    }
    // The total from the task counters (a read per state and owner, never one per task); a search has none.
    const q = c.req.query("q")?.trim();
    const total = q ? null : await countTasks(kv, { state, owner: who.role === "submitter" ? who.user : undefined });
    return c.json({ tasks, next, total });
  });

  app.get("/api/v1/tasks/:id", async (c) => {
    const who = c.get("who");
    const task = taskView(await loadTask(kv, c.req.param("id"), who), who);
    return c.json({ ...task, notify: await notifyView(kv, task) });
  });

  app.get("/api/v1/tasks/:id/related", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    return c.json(await relatedOf(kv, task, c.get("who")));
  });

  app.get("/api/v1/tasks/:id/explain", async (c) => {
    const task = await loadTask(kv, c.req.param("id"), c.get("who"));
    const raw = c.req.query("instance");
    const index = raw === undefined ? undefined : instanceIndex(task, raw);
    const reply = unwrap(await bus.request(taskExplain, { taskId: task.id, index }));
    return c.json({ taskId: task.id, index: index ?? null, state: reply.state, explanation: reply.explanation });
  });

  app.post("/api/v1/tasks/:id/cancel", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "cancel a task");
    const task = await loadTask(kv, c.req.param("id"), who);
    const reply = unwrap(await bus.request(taskCancel, { taskId: task.id, by: who.user }));
    await audit.record({ action: "task.cancel", user: who.user, address: clientAddress(c), target: task.id });
    return c.json({ id: task.id, state: reply.state });
  });

  app.delete("/api/v1/tasks/:id", async (c) => {
    const who = c.get("who");
    requireRole(who, "submitter", "delete a task");
    const task = await loadTask(kv, c.req.param("id"), who);
    const { freedBytes } = await workspace.deleteTask(task);
    await audit.record({
      action: "task.delete",
      user: who.user,
      address: clientAddress(c),
      target: task.id,
      detail: `${freedBytes} bytes freed`,
    });
    return c.json({ id: task.id, deleted: true, freedBytes });
  });

  // A check answers 200 either way: the verdict is the answer. Its error is the one a submit would give.
  app.post("/api/v1/packages/check", async (c) => {
    requireRole(c.get("who"), "submitter", "check a package");
    let view: PackageCheckView;
    try {
      await using upload = await readUpload(c, limits, deps.spoolDir);
      const { digest, packageBytes, entries, unpackedBytes, spec } = await checkUpload(upload, limits);
      view = { ok: true, digest, packageBytes, entries, unpackedBytes, spec };
    } catch (e) {
      if (!(e instanceof ValidationError || e instanceof TooLargeError)) throw e;
      view = { ok: false, error: { code: e.code, message: e.message } };
    }
    return c.json(view);
  });

  return app;
}
