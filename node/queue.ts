/**
 * The node's local queue: instances assigned and waiting for a slot, in the
 * order they came, and those running. A freed slot starts the next one at
 * once; the next ones (one per slot) get their run dirs while others run.
 *
 * @module
 */
import type { InstanceRef, RunSpec } from "../core/schema.ts";
import type { InstanceProcess } from "./spawn.ts";
import type { RunDir } from "./run_dirs.ts";
import type { RunAs } from "./run_as.ts";

/** One instance the node holds. */
export interface Job {
  /** The instance it runs (the first of its chunk). */
  ref: InstanceRef;
  /** The other instances of its chunk (`[task] chunk`), run in the same process. */
  more?: InstanceRef[];
  digest: string;
  run: RunSpec;
  proc?: InstanceProcess;
  killed?: string;
  /** Its run dir (private copy of the task root), made ahead of its turn (see `Runner.stage`). */
  staged?: Promise<RunDir>;
  /** The user it runs as (`--run-as`, or its task's uid of `--run-as-range`, held while it is staged). */
  user?: RunAs | null;
}

/** Every instance a job runs: its own and the rest of its chunk. */
export const refsOf = (job: Job): InstanceRef[] => job.more?.length ? [job.ref, ...job.more] : [job.ref];

/** An attempt's key: task, index and attempt. */
export const keyOf = (r: InstanceRef): string => `${r.taskId}/${r.index}/${r.attempt}`;

/** What the queue needs. */
export interface JobQueueDeps {
  /** How many instances (of 1 cpu) run at once. */
  slots: number;
  /** Runs a job; resolves when it ended and its result is reported. */
  run(job: Job): Promise<void>;
  /**
   * Starts getting a job's run dir ready, ahead of its turn; false while the
   * job must wait (for a uid of `--run-as-range`). Null when nothing is
   * staged (noop nodes).
   */
  stage: ((job: Job) => boolean) | null;
  /** Whether what a job asks beside slots (its GPUs) is free now; the job waits until it is. */
  fits?(job: Job): boolean;
  /** True once the node stops: nothing new starts. */
  stopping(): boolean;
}

/** The queue of {@linkcode createJobQueue}. */
export interface JobQueue {
  /** Jobs waiting for a slot, by key, in the order they came (a Map keeps it). */
  readonly waiting: Map<string, Job>;
  /** Jobs running, by key. */
  readonly running: Map<string, Job>;
  /** Slots in use. */
  usedSlots(): number;
  /** Starts what fits in the free slots, and stages the next ones. */
  pump(): void;
}

/** Creates the node's local queue. */
export function createJobQueue(deps: JobQueueDeps): JobQueue {
  const { slots } = deps;
  const waiting = new Map<string, Job>();
  const running = new Map<string, Job>();
  let usedSlots = 0;

  const pump = () => {
    for (const [key, job] of waiting) {
      if (deps.stopping() || usedSlots + Math.min(job.run.cpus, slots) > slots) break;
      if (deps.fits && !deps.fits(job)) continue;
      // Its task waits for a uid (the range is lent out); other tasks' jobs may go meanwhile.
      if (deps.stage && !deps.stage(job)) continue;
      waiting.delete(key);
      usedSlots += Math.min(job.run.cpus, slots);
      running.set(keyOf(job.ref), job);
      void deps.run(job).finally(() => {
        usedSlots -= Math.min(job.run.cpus, slots);
        running.delete(keyOf(job.ref));
        pump();
      });
    }
    // The next ones (one per slot) get their copies while these run.
    if (deps.stage && !deps.stopping()) {
      let n = 0;
      for (const job of waiting.values()) {
        if (n++ >= slots) break;
        deps.stage(job);
      }
    }
  };

  return { waiting, running, usedSlots: () => usedSlots, pump };
}
