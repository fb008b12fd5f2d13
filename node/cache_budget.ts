/**
 * One byte budget for what a node keeps on disk between instances: data set
 * versions and unpacked packages (`--cache-size`). When something new needs
 * room, the least recently used items that nothing is using are evicted,
 * whichever cache holds them.
 *
 * @module
 */

/** One cached item, as the budget sees it. */
export interface Cached {
  /** Bytes it takes on disk. */
  bytes: number;
  /** Users now: an item in use is never evicted. */
  users: number;
  /** When it was last used (ms since the epoch). */
  lastUsed: number;
  /** Removes it from its cache and from disk (the budget has let it go already). */
  evict(why: string): Promise<void>;
}

/** A byte budget shared by the node's caches. */
export interface CacheBudget {
  /** Most bytes kept. */
  readonly capBytes: number;
  /** Bytes the counted items take. */
  readonly bytes: number;
  /** Counts `item` (with its `bytes` as they are now). */
  add(item: Cached): void;
  /** Stops counting `item`. */
  delete(item: Cached): void;
  /** Evicts least recently used idle items until `needBytes` more fit (or nothing idle is left). */
  makeRoom(needBytes: number): Promise<void>;
  /**
   * Marks `item` used once more until the returned function is called (once
   * counts); then, when the budget is over, makes room.
   */
  hold(item: Cached): () => void;
}

/** Creates a budget of `capBytes`. */
export function createCacheBudget(capBytes: number): CacheBudget {
  const items = new Map<Cached, number>();
  let total = 0;
  const budget: CacheBudget = {
    capBytes,
    get bytes() {
      return total;
    },
    add(item) {
      if (items.has(item)) return;
      items.set(item, item.bytes);
      total += item.bytes;
    },
    delete(item) {
      const bytes = items.get(item);
      if (bytes === undefined) return;
      items.delete(item);
      total -= bytes;
    },
    async makeRoom(needBytes) {
      const idle = [...items.keys()].filter((i) => i.users === 0).sort((a, b) => a.lastUsed - b.lastUsed);
      for (const item of idle) {
        if (total + needBytes <= capBytes) break;
        // Taken meanwhile by another caller, or back in use: kept.
        if (!items.has(item) || item.users > 0) continue;
        budget.delete(item);
        await item.evict("room for another item");
      }
    },
    hold(item) {
      item.users++;
      item.lastUsed = Date.now();
      let released = false;
      return () => {
        if (released) return;
        released = true;
        item.users--;
        item.lastUsed = Date.now();
        if (total > capBytes) void budget.makeRoom(0).catch(() => {});
      };
    },
  };
  return budget;
}
