/**
 * The notify service: delivers the notifications task ends owe their
 * `[notify]` webhooks (see `actors/task/notify.ts`), apart from the task
 * actor so that a slow or dead receiver never holds a task up.
 *
 * What is owed lives in Deno KV (`["notify-outbox", taskId]`, written with
 * the task's final record): a manager restart finds it there and goes on.
 * A task's done event (`parallelic.task.<id>.done`) wakes the service; a
 * timer wakes it for retries. Each try is signed (see `core/notify.ts`),
 * checked against the address policy (`services/notify_address.ts`) and
 * bounded by a timeout. A 2xx answer delivers it; a 4xx other than 408 and
 * 429, a redirect or a refused address gives up at once; anything else is
 * tried again after 15 s, 45 s, 135 s and 405 s (5 tries over about 10
 * minutes), then given up. Every try is kept in `["notify", taskId]`, and
 * told on `parallelic.task.<id>.notified` (the task page follows it live).
 *
 * @module
 */
import type { Bus } from "../core/bus.ts";
import { ValidationError } from "../core/errors.ts";
import type { Clock, TimerId } from "../core/clock.ts";
import { failedOf, NOTIFY_OUTBOX, notifyKey } from "../core/kv.ts";
import type { Logger } from "../core/log.ts";
import {
  DELIVERY_HEADER,
  MAX_NOTIFIED_FAILURES,
  type NotifyOutbox,
  type NotifyPayload,
  notifyUrlProblem,
  SIGNATURE_HEADER,
  signNotification,
  TIMESTAMP_HEADER,
} from "../core/notify.ts";
import {
  MAX_KEPT_DELIVERIES,
  type NotifyDelivery,
  type NotifyStatus,
  taskDoneAll,
  taskNotified,
} from "../core/schema.ts";
import { addressPolicy, type Resolver } from "./notify_address.ts";

/** What the notify service needs. */
export interface NotifyServiceDeps {
  bus: Bus;
  kv: Deno.Kv;
  clock: Clock;
  log: Logger;
}

/** Options of {@linkcode createNotifyService}. */
export interface NotifyServiceOptions {
  signal: AbortSignal;
  /** The HMAC-SHA256 key every notification is signed with. */
  secret: string;
  /** `--notify-allow`: internal hosts, addresses and CIDRs webhooks may reach. @default {[]} */
  allow?: readonly string[];
  /** The manager's public URL (`--public-url`): notifications link to the task's page under it. */
  publicUrl?: string | null;
  /** Tries before giving up. @default {5} */
  tries?: number;
  /** Wait before the second try; each later wait is 3 times the one before. @default {15000} */
  firstRetryMs?: number;
  /** Longest wait for a receiver's answer, per try. @default {10000} */
  timeoutMs?: number;
  /** Most tries in flight at once. @default {8} */
  concurrency?: number;
  /** How hosts are resolved (tests). @default {DNS} */
  resolve?: Resolver;
}

/** A running notify service. */
export interface NotifyService {
  /** Resolves once it stopped (tries in flight are abandoned and made again at the next start). */
  readonly stopped: Promise<void>;
}

/** What one try came to. */
interface Outcome {
  httpStatus: number | null;
  error: string | null;
  ok: boolean;
  /** Whether a later try may do better. */
  again: boolean;
}

/** Starts the notify service. */
export function createNotifyService(deps: NotifyServiceDeps, options: NotifyServiceOptions): NotifyService {
  const { bus, kv, clock, signal } = { ...deps, signal: options.signal };
  const log = deps.log.scope({ actor: "notify" });
  const policy = addressPolicy(options.allow ?? [], options.resolve);
  const tries = options.tries ?? 5;
  const firstRetryMs = options.firstRetryMs ?? 15_000;
  const timeoutMs = options.timeoutMs ?? 10_000;
  const concurrency = options.concurrency ?? 8;
  const publicUrl = options.publicUrl?.replace(/\/+$/, "") ?? null;
  const badUrl = publicUrl === null ? null : notifyUrlProblem(publicUrl);
  if (badUrl) throw new ValidationError(`--public-url '${publicUrl}': ${badUrl}`, { code: "invalid_config" });
  const inFlight = new Map<string, Promise<void>>();
  let timer: TimerId | undefined;
  let scanning = false;
  let again = false;

  async function payloadOf(owed: NotifyOutbox): Promise<NotifyPayload> {
    const failed: number[] = [];
    for await (const e of kv.list({ prefix: failedOf(owed.task.id) }, { limit: MAX_NOTIFIED_FAILURES })) {
      failed.push(e.key[2] as number);
    }
    const { failed: f, cancelled: c } = owed.task.counts;
    return {
      event: "task.ended",
      delivery: `${owed.task.id}-${owed.task.endedAt}`,
      task: { ...owed.task, link: publicUrl ? `${publicUrl}/tasks/${owed.task.id}` : null },
      failedInstances: failed,
      failedInstancesMore: Math.max(0, f + c - failed.length),
    };
  }

  async function post(owed: NotifyOutbox, body: string, delivery: string): Promise<Outcome> {
    const url = new URL(owed.url);
    const refused = await policy.check(url);
    if (refused) return { httpStatus: null, error: refused.why, ok: false, again: !refused.lasting };
    const timestampS = Math.floor(clock.now() / 1000);
    try {
      const res = await fetch(url, {
        method: "POST",
        body,
        redirect: "manual",
        headers: {
          "content-type": "application/json",
          "user-agent": "Parallelic-Notify/1",
          [SIGNATURE_HEADER]: await signNotification(options.secret, timestampS, body),
          [TIMESTAMP_HEADER]: String(timestampS),
          [DELIVERY_HEADER]: delivery,
        },
        signal: AbortSignal.any([AbortSignal.timeout(timeoutMs), signal]),
      });
      await res.body?.cancel();
      const s = res.status;
      if (s >= 200 && s < 300) return { httpStatus: s, error: null, ok: true, again: false };
      if (s >= 300 && s < 400) return { httpStatus: s, error: "redirects are not followed", ok: false, again: false };
      const lasting = s >= 400 && s < 500 && s !== 408 && s !== 429;
      return { httpStatus: s, error: `answered ${s} ${res.statusText}`.trim(), ok: false, again: !lasting };
    } catch (e) {
      // fetch says "fetch failed" and keeps why (refused, no route, TLS) in its cause.
      const cause = (e as Error).cause instanceof Error ? `: ${((e as Error).cause as Error).message}` : "";
      const error = (e as Error).name === "TimeoutError"
        ? `no answer within ${timeoutMs / 1000} s`
        : `${(e as Error).message}${cause}`.split("\n")[0].slice(0, 200);
      return { httpStatus: null, error, ok: false, again: true };
    }
  }

  async function deliver(entry: Deno.KvEntry<NotifyOutbox>): Promise<void> {
    const owed = entry.value;
    const id = owed.task.id;
    const body = owed.body ?? JSON.stringify(await payloadOf(owed));
    const attempt = owed.tries + 1;
    const outcome = await post(owed, body, `${id}-${owed.task.endedAt}`);
    if (signal.aborted) return;
    const at = clock.now();
    const status: NotifyDelivery["status"] = outcome.ok
      ? "delivered"
      : outcome.again && attempt < tries
      ? "failed"
      : "gave_up";
    const nextAt = status === "failed" ? at + firstRetryMs * 3 ** (attempt - 1) : null;
    const before = (await kv.get<NotifyStatus>(notifyKey(id))).value;
    const record: NotifyStatus = {
      phase: status === "failed" ? "retrying" : status,
      state: owed.task.state,
      nextAt,
      deliveries: [
        ...(before?.deliveries ?? []),
        { at, attempt, status, httpStatus: outcome.httpStatus, error: outcome.error },
      ].slice(-MAX_KEPT_DELIVERIES),
    };
    const op = kv.atomic().check(entry).set(notifyKey(id), record);
    if (nextAt === null) op.delete(entry.key);
    else op.set(entry.key, { ...owed, tries: attempt, nextAt, body } satisfies NotifyOutbox);
    // A task that ended again (a rerun) or was deleted meanwhile owes another notification, or none.
    const { ok } = await op.commit();
    if (ok) bus.publish(taskNotified(id), { taskId: id, owner: owed.task.owner, notify: record });
    log[status === "delivered" ? "info" : "warn"]("notify:try", {
      taskId: id,
      attempt,
      status,
      httpStatus: outcome.httpStatus,
      error: outcome.error,
      superseded: !ok,
    });
  }

  async function scan(): Promise<void> {
    if (scanning) return void (again = true);
    scanning = true;
    try {
      do {
        again = false;
        const now = clock.now();
        let next = Infinity;
        for await (const e of kv.list<NotifyOutbox>({ prefix: NOTIFY_OUTBOX })) {
          const id = e.key[1] as string;
          if (inFlight.has(id)) continue;
          if (e.value.nextAt > now || inFlight.size >= concurrency) {
            next = Math.min(next, Math.max(e.value.nextAt, now + 1000));
            continue;
          }
          const run = deliver(e)
            .catch((err) => log.error("notify:failed", { taskId: id, error: String(err) }))
            .finally(() => {
              inFlight.delete(id);
              if (!signal.aborted) void scan();
            });
          inFlight.set(id, run);
        }
        if (timer !== undefined) clock.clearTimeout(timer);
        timer = next === Infinity || signal.aborted
          ? undefined
          : clock.setTimeout(() => void scan(), Math.max(0, next - clock.now()));
      } while (again && !signal.aborted);
    } catch (e) {
      log.error("notify:scan-failed", { error: String(e) });
      if (!signal.aborted) timer = clock.setTimeout(() => void scan(), 1000);
    } finally {
      scanning = false;
    }
  }

  const sub = bus.subscribe(taskDoneAll, () => void scan());
  void scan();
  const stopped = new Promise<void>((resolve) => {
    const stop = async () => {
      sub.unsubscribe();
      if (timer !== undefined) clock.clearTimeout(timer);
      await Promise.allSettled(inFlight.values());
      resolve();
    };
    if (signal.aborted) void stop();
    else signal.addEventListener("abort", () => void stop(), { once: true });
  });
  return { stopped };
}
