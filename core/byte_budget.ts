/**
 * A budget of bytes shared by many readers: each takes what it may hold
 * before fetching and gives it back once passed on, so what they hold
 * together stays under one limit; past it, readers wait their turn (first
 * come, first served).
 *
 * @module
 */

/** A shared budget of bytes (see {@linkcode createByteBudget}). */
export interface ByteBudget {
  /**
   * Waits until at least `minBytes` are free, then takes as many as are free
   * up to `maxBytes` and tells how many it took.
   */
  take(minBytes: number, maxBytes: number): Promise<number>;
  /** Gives back bytes taken. */
  give(bytes: number): void;
  /** Bytes taken now. */
  usedBytes(): number;
  /** Most bytes taken at once so far. */
  peakBytes(): number;
  /** The limit. */
  readonly limitBytes: number;
}

/** A budget of `limitBytes`. */
export function createByteBudget(limitBytes: number): ByteBudget {
  let used = 0;
  let peak = 0;
  const waiting: { minBytes: number; maxBytes: number; grant: (bytes: number) => void }[] = [];
  const grant = (maxBytes: number) => {
    const bytes = Math.min(maxBytes, limitBytes - used);
    used += bytes;
    peak = Math.max(peak, used);
    return bytes;
  };
  const wake = () => {
    while (waiting.length > 0 && limitBytes - used >= waiting[0].minBytes) {
      const w = waiting.shift()!;
      w.grant(grant(w.maxBytes));
    }
  };
  return {
    take(minBytes, maxBytes) {
      // One asking for more than the whole budget would wait forever: it gets the whole budget.
      minBytes = Math.min(minBytes, limitBytes);
      maxBytes = Math.max(minBytes, maxBytes);
      if (waiting.length === 0 && limitBytes - used >= minBytes) return Promise.resolve(grant(maxBytes));
      return new Promise((resolve) => waiting.push({ minBytes, maxBytes, grant: resolve }));
    },
    give(bytes) {
      used = Math.max(0, used - bytes);
      wake();
    },
    usedBytes: () => used,
    peakBytes: () => peak,
    limitBytes,
  };
}

/** Bytes one reader took from a budget, given back at once when it closes. */
export interface BudgetShare extends Pick<ByteBudget, "take" | "give"> {
  /** Gives back all it still holds; what it takes later goes straight back. */
  close(): void;
}

/** A share of `budget` for one reader. */
export function shareOf(budget: ByteBudget): BudgetShare {
  let held = 0;
  let closed = false;
  return {
    async take(minBytes, maxBytes) {
      const bytes = await budget.take(minBytes, maxBytes);
      if (closed) budget.give(bytes);
      else held += bytes;
      return bytes;
    },
    give(bytes) {
      const back = Math.min(bytes, held);
      held -= back;
      budget.give(back);
    },
    close() {
      closed = true;
      budget.give(held);
      held = 0;
    },
  };
}
