/**
 * The task page's notifications: how the task's `[notify]` webhook fared
 * ("delivered 200 at …", "failing, retry in 40 s", "gave up after 5 tries"),
 * live from the task's event stream (`notify` events), and "Notify me when it ends", an opt-in desktop notification fired when
 * the task's event stream shows it ended. The choice is kept per task in
 * localStorage, so a reload of the page keeps it; it is cleared once fired.
 */
import { everySecond, FINAL, formatTime, h } from "./common.js";

const storeKey = (taskId) => `parallelic.notify-me.${taskId}`;

/** The webhook's line, in words (as `parallelic status ID` says it). */
export function webhookLine(n, now = Date.now()) {
  const last = n.deliveries.at(-1);
  const why = last ? (last.error ?? `answered ${last.httpStatus}`) : "";
  switch (n.phase) {
    case "waiting":
      return `will be sent when the task ends ${n.on.join(" or ")}`;
    case "skipped":
      return `not sent: the task ended ${n.state}, not ${n.on.join(" or ")}`;
    case "pending":
      return "sending…";
    case "retrying":
      return `failing (${why}), retry in ${Math.max(0, Math.ceil(((n.nextAt ?? now) - now) / 1000))} s`;
    case "delivered":
      return `delivered ${last?.httpStatus ?? ""} at ${formatTime(last?.at)}` +
        (last && last.attempt > 1 ? ` (try ${last.attempt})` : "");
    case "gave_up":
      return `gave up after ${last?.attempt ?? 0} ${last?.attempt === 1 ? "try" : "tries"}: ${why}`;
  }
  return n.phase;
}

/**
 * Fills `box` with the webhook line and the "Notify me" toggle of task
 * `taskId`. `show(task)` after each read of the task, `progress(before, after)`
 * after each progress event of its stream, `update(event)` after each notify event.
 */
export function createNotify(box, taskId) {
  const line = h("p", { class: "muted small notify-line", role: "status", hidden: "" });
  const input = h("input", { type: "checkbox", id: "notify-me" });
  const toggle = h("label", { class: "notify-me small", hidden: "" }, input, " Notify me when it ends");
  const said = h("span", { class: "muted small", role: "status" });
  box.replaceChildren(line, toggle, said);
  let task = null;

  const wanted = () => localStorage.getItem(storeKey(taskId)) === "1";
  const supported = "Notification" in globalThis;

  input.addEventListener("change", async () => {
    said.textContent = "";
    if (!input.checked) return localStorage.removeItem(storeKey(taskId));
    const permission = Notification.permission === "granted" ? "granted" : await Notification.requestPermission();
    if (permission !== "granted") {
      input.checked = false;
      said.textContent = "The browser does not allow notifications from this page.";
      return;
    }
    localStorage.setItem(storeKey(taskId), "1");
  });

  function render() {
    const n = task?.notify;
    line.hidden = !n;
    if (n) line.textContent = `Notification to ${new URL(n.url).host}: ${webhookLine(n)}`;
    toggle.hidden = !supported || !task || FINAL.has(task.state);
    input.checked = supported && wanted();
  }

  // A retry's countdown moves on its own; what a try came to arrives on the event stream.
  everySecond(() => {
    if (task?.notify?.phase === "retrying") render();
  });

  return {
    show(fresh) {
      task = fresh;
      render();
    },
    /** A `notify` event of the task's stream: how the latest try went. */
    update(event) {
      if (!task?.notify || event.taskId !== taskId) return;
      task = { ...task, notify: { ...task.notify, ...event.notify } };
      render();
    },
    progress(before, after) {
      task = { ...after, notify: task?.notify ?? after.notify };
      const ended = FINAL.has(after.state) && !FINAL.has(before.state);
      if (ended && supported && wanted() && Notification.permission === "granted") {
        new Notification(`${after.name} ${after.state}`, {
          body: `Task ${taskId}: ${after.counts.succeeded} succeeded, ${after.counts.failed} failed`,
          tag: `parallelic-${taskId}`,
        });
        localStorage.removeItem(storeKey(taskId));
      }
      const n = task.notify;
      // Owed from the end on (the first try's outcome comes as a notify event), or not sent at all; a try made
      // since the end (its event came first) is newer still.
      const triedSince = n?.deliveries.some((d) => d.at >= (after.endedAt ?? Infinity));
      if (ended && n && !triedSince) {
        const told = n.on.includes(after.state);
        task.notify = { ...n, state: after.state, phase: told ? "pending" : "skipped", nextAt: null, deliveries: [] };
      }
      render();
    },
  };
}
