/**
 * Time as a dependency, so that actors can be tested without waiting
 * (`@std/testing`'s FakeTime is JSR-only and JSR is out of reach).
 *
 * @module
 */
import { setImmediate } from "node:timers";

/** A timer handle. */
export type TimerId = ReturnType<typeof setTimeout>;

/** What actors need of time. */
export interface Clock {
  /** Milliseconds since the epoch. */
  now(): number;
  /** Calls `fn` after `ms`; returns a handle for {@linkcode Clock.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): TimerId;
  /** Cancels a timer made by {@linkcode Clock.setTimeout}. */
  clearTimeout(id: TimerId): void;
}

/** The real clock. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id),
};

/**
 * Runs `fn` on the next turn of the event loop, once the I/O that is ready
 * now has been handled (so that messages which arrived together are handled
 * together). Not a timer: `setTimeout(fn, 0)` waits 1-2 ms in Deno, this
 * about 20 µs.
 */
export function nextTurn(fn: () => void): void {
  setImmediate(fn);
}

/** A clock that moves only when told to: for tests. */
export class ManualClock implements Clock {
  #now: number;
  #timers = new Map<TimerId, { at: number; fn: () => void }>();
  #nextId = 1;
  constructor(start = 1_700_000_000_000) {
    this.#now = start;
  }
  now(): number {
    return this.#now;
  }
  setTimeout(fn: () => void, ms: number): TimerId {
    const id = this.#nextId++ as unknown as TimerId;
    this.#timers.set(id, { at: this.#now + Math.max(0, ms), fn });
    return id;
  }
  clearTimeout(id: TimerId): void {
    this.#timers.delete(id);
  }
  /** Moves time forward by `ms`, running every timer that falls due, in order. */
  advance(ms: number): void {
    const end = this.#now + ms;
    for (;;) {
      let next: [TimerId, { at: number; fn: () => void }] | undefined;
      for (const entry of this.#timers) {
        if (entry[1].at <= end && (!next || entry[1].at < next[1].at)) {
          next = entry;
        }
      }
      if (!next) break;
      this.#timers.delete(next[0]);
      this.#now = next[1].at;
      next[1].fn();
    }
    this.#now = end;
  }
}
