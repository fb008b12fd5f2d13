/**
 * A task webhook's delivery status in words, for the CLI's status view. Kept
 * apart from `core/notify.ts` so that the CLI does not load zod and every
 * message schema to start.
 *
 * @module
 */
import type { NotifyView } from "./schema.ts";

/**
 * Where a task's notification stands, in a line (`parallelic status ID`):
 * "delivered 200 at 12:00:01", "failing (answered 500), try 3 in 40 s",
 * "gave up after 5 tries: …".
 */
export function notifyLine(view: NotifyView, nowMs: number): string {
  const last = view.deliveries.at(-1);
  const why = last ? (last.error ?? `answered ${last.httpStatus}`) : "";
  const clock = (ms: number) => new Date(ms).toISOString().slice(11, 19) + " UTC";
  switch (view.phase) {
    case "waiting":
      return `on ${view.on.join(", ")}: when the task ends`;
    case "skipped":
      return `not sent: the task ended ${view.state}, not one of ${view.on.join(", ")}`;
    case "pending":
      return "owed: first try now";
    case "retrying":
      return `failing (${why}), try ${(last?.attempt ?? 0) + 1} in ${
        Math.max(0, Math.ceil(((view.nextAt ?? nowMs) - nowMs) / 1000))
      } s`;
    case "delivered":
      return `delivered ${last?.httpStatus ?? ""} at ${last ? clock(last.at) : "?"}` +
        (last && last.attempt > 1 ? ` (try ${last.attempt})` : "");
    case "gave_up":
      return `gave up after ${last?.attempt ?? 0} ${last?.attempt === 1 ? "try" : "tries"}: ${why}`;
  }
}
