/**
 * An in-process lock per key: callers with the same key run one at a time,
 * in arrival order; different keys do not wait for each other.
 *
 * @module
 */

/** A lock per key. */
export interface KeyedLock {
  /** Runs `fn` once every earlier caller with the same key has finished. */
  run<T>(key: string, fn: () => Promise<T> | T): Promise<T>;
}

/** Creates a {@linkcode KeyedLock}. */
export function createKeyedLock(): KeyedLock {
  const tails = new Map<string, Promise<unknown>>();
  return {
    run(key, fn) {
      const before = tails.get(key) ?? Promise.resolve();
      const result = before.catch(() => {}).then(fn);
      const tail = result.catch(() => {});
      tails.set(key, tail);
      void tail.then(() => {
        if (tails.get(key) === tail) tails.delete(key);
      });
      return result;
    },
  };
}
