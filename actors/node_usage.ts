/**
 * A node's recent use, kept in memory only: heartbeats folded into one
 * sample per span (30 s by default), the last hour of them in a ring. Nothing
 * of it is written to Deno KV; after a manager restart the history starts
 * again. 50 nodes × 120 samples stay a few hundred kilobytes at most.
 *
 * @module
 */
import type { Heartbeat, UsageSample } from "../core/schema.ts";

/** How long one sample spans by default. */
export const USAGE_SPAN_MS = 30_000;
/** How much history is kept by default. */
export const USAGE_KEEP_MS = 60 * 60_000;

/** The samples of one node. */
export interface UsageRing {
  /** Folds a heartbeat received at `atMs` into the sample of its span. */
  add(atMs: number, hb: Pick<Heartbeat, "usedSlots" | "cpuBusy" | "memoryUsedBytes">): void;
  /** The samples of spans that ended after `sinceMs` (and the one under way), oldest first. */
  since(sinceMs: number): UsageSample[];
}

/** Creates a ring of `keepMs / spanMs` samples. */
export function createUsageRing(spanMs = USAGE_SPAN_MS, keepMs = USAGE_KEEP_MS): UsageRing {
  const size = Math.max(1, Math.ceil(keepMs / spanMs));
  /** Samples by span number modulo `size`, each with what its CPU mean is made of. */
  const ring: Array<(UsageSample & { span: number; cpuSum: number; cpuCount: number }) | undefined> = new Array(size);
  return {
    add(atMs, hb) {
      const span = Math.floor(atMs / spanMs);
      let s = ring[span % size];
      if (!s || s.span !== span) {
        s = { span, at: span * spanMs, cpuBusy: null, memoryUsedBytes: null, usedSlots: 0, cpuSum: 0, cpuCount: 0 };
        ring[span % size] = s;
      }
      s.usedSlots = Math.max(s.usedSlots, hb.usedSlots);
      if (hb.cpuBusy !== undefined) {
        s.cpuSum += hb.cpuBusy;
        s.cpuCount++;
        s.cpuBusy = s.cpuSum / s.cpuCount;
      }
      if (hb.memoryUsedBytes !== undefined) s.memoryUsedBytes = Math.max(s.memoryUsedBytes ?? 0, hb.memoryUsedBytes);
    },
    since(sinceMs) {
      const out: UsageSample[] = [];
      for (const s of ring) {
        if (s && s.at + spanMs > sinceMs) {
          out.push({ at: s.at, cpuBusy: s.cpuBusy, memoryUsedBytes: s.memoryUsedBytes, usedSlots: s.usedSlots });
        }
      }
      return out.sort((a, b) => a.at - b.at);
    },
  };
}
