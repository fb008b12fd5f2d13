/**
 * A small Prometheus registry: counters, gauges and histograms with labels,
 * rendered in the text exposition format. Injected into actors like any
 * other dependency; the manager's gateway serves it at `GET /metrics`, a
 * node at `--metrics-port`.
 *
 * @module
 */

/** Label names and values. */
export type Labels = Record<string, string>;

interface Family {
  name: string;
  help: string;
  type: "counter" | "gauge" | "histogram";
  buckets?: number[];
  series: Map<string, { labels: Labels; value: number; counts?: number[]; sum?: number }>;
  collect?: () => void;
}

const key = (labels: Labels) => {
  // Most series have no label or one (an instance's result updates several): no entries to sort then.
  const names = Object.keys(labels);
  if (names.length === 0) return "[]";
  if (names.length === 1) return JSON.stringify([[names[0], labels[names[0]]]]);
  return JSON.stringify(Object.entries(labels).sort());
};
const escape = (v: string) => v.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
const fmtLabels = (labels: Labels, extra: Labels = {}) => {
  const all = { ...labels, ...extra };
  const parts = Object.entries(all).map(([k, v]) => `${k}="${escape(v)}"`);
  return parts.length ? `{${parts.join(",")}}` : "";
};

/** A counter: only goes up. */
export interface Counter {
  /** Adds `n` (default 1). */
  inc(labels?: Labels, n?: number): void;
}

/** A gauge: set to the current value. */
export interface Gauge {
  /** Sets the value. */
  set(value: number, labels?: Labels): void;
}

/** A histogram of observations. */
export interface Histogram {
  /** Records one observation. */
  observe(value: number, labels?: Labels): void;
}

/** A metrics registry. */
export class Metrics {
  #families = new Map<string, Family>();

  #family(name: string, help: string, type: Family["type"], buckets?: number[]): Family {
    let f = this.#families.get(name);
    if (!f) this.#families.set(name, f = { name, help, type, buckets, series: new Map() });
    return f;
  }

  #series(f: Family, labels: Labels) {
    const k = key(labels);
    let s = f.series.get(k);
    if (!s) {
      s = { labels, value: 0 };
      if (f.buckets) {
        s.counts = f.buckets.map(() => 0);
        s.sum = 0;
      }
      f.series.set(k, s);
    }
    return s;
  }

  /** Declares (or returns) a counter. */
  counter(name: string, help: string): Counter {
    const f = this.#family(name, help, "counter");
    return { inc: (labels = {}, n = 1) => void (this.#series(f, labels).value += n) };
  }

  /** Declares (or returns) a gauge; `collect` refreshes it just before each scrape. */
  gauge(name: string, help: string, collect?: (gauge: Gauge) => void): Gauge {
    const f = this.#family(name, help, "gauge");
    const gauge: Gauge = { set: (value, labels = {}) => void (this.#series(f, labels).value = value) };
    if (collect) f.collect = () => collect(gauge);
    return gauge;
  }

  /** Declares (or returns) a histogram with upper bounds `buckets`. */
  histogram(name: string, help: string, buckets: number[]): Histogram {
    const f = this.#family(name, help, "histogram", buckets);
    return {
      observe: (value, labels = {}) => {
        const s = this.#series(f, labels);
        s.value++;
        s.sum! += value;
        const buckets = f.buckets!;
        for (let i = 0; i < buckets.length; i++) if (value <= buckets[i]) s.counts![i]++;
      },
    };
  }

  /** Renders every metric in the Prometheus text format. */
  render(): string {
    const out: string[] = [];
    for (const f of this.#families.values()) {
      f.collect?.();
      out.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} ${f.type}`);
      for (const s of f.series.values()) {
        if (f.type !== "histogram") {
          out.push(`${f.name}${fmtLabels(s.labels)} ${s.value}`);
          continue;
        }
        f.buckets!.forEach((b, i) =>
          out.push(`${f.name}_bucket${fmtLabels(s.labels, { le: String(b) })} ${s.counts![i]}`)
        );
        out.push(`${f.name}_bucket${fmtLabels(s.labels, { le: "+Inf" })} ${s.value}`);
        out.push(`${f.name}_sum${fmtLabels(s.labels)} ${s.sum}`, `${f.name}_count${fmtLabels(s.labels)} ${s.value}`);
      }
    }
    return out.join("\n") + "\n";
  }
}

/** Duration buckets in seconds, from 1 ms to 1 day. */
export const DURATION_BUCKETS = [0.001, 0.01, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400];
