/**
 * Finalize as its own step of the task page: its state (waiting for the
 * instances, queued, running, succeeded, failed, or not defined), its
 * outputs, a button that opens its attempts and log in the details panel
 * (the same log viewer as an instance's), and "Run finalize again" (what "Rerun finalize" does).
 */
import { badge, formatCount } from "./common.js";
import { createOutputs } from "./outputs.js";

/** What finalize is doing, in words, and the state its badge shows (null: none). */
export function finalizeState(task) {
  if (!task.spec.finalize) return { text: "Not defined: task.toml has no [finalize].", state: null };
  if (task.finalize) return { text: "", state: task.finalize };
  const c = task.counts;
  if (task.state === "failed" || task.state === "cancelled") {
    return { text: `Not run: ${formatCount(c.failed + c.cancelled)} instances did not succeed.`, state: null };
  }
  return {
    text: `Waiting for instances: ${formatCount(c.succeeded)} of ${formatCount(task.instances)} succeeded.`,
    state: null,
  };
}

/** Creates the finalize card's logic over `root` (`#finalize`). */
export function createFinalizeCard(root, taskId, { onOpen, onRerun }) {
  const stateEl = root.querySelector(".finalize-state");
  const open = root.querySelector(".finalize-open");
  const rerun = root.querySelector(".finalize-rerun");
  const outputs = createOutputs(root.querySelector(".outputs"), taskId, { label: "Outputs of finalize" });
  open.addEventListener("click", () => onOpen());
  rerun.addEventListener("click", () => onRerun());
  return {
    /** Shows finalize as of `task`; `mayRerun` says whether the rerun button shows. */
    render(task, mayRerun) {
      const { text, state } = finalizeState(task);
      stateEl.replaceChildren(...(state ? [badge(state), " "] : []), text);
      open.hidden = !task.spec.finalize || !task.finalize;
      rerun.hidden = !mayRerun;
      const ended = task.finalize === "succeeded" || task.finalize === "failed";
      // The listing is read again after each run of finalize (a rerun replaces its outputs).
      void outputs.show(ended ? "finalize" : null, `${task.finalize}/${task.reruns}/${task.endedAt}`);
    },
  };
}
