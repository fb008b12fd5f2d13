/**
 * Data-path benchmark (issue 7, item 6): a package of 100 MiB and a data set
 * of 1 GiB to 2 nodes; MB/s as a fraction of the plain object-store rate, and
 * peak resident memory of manager and node.
 *
 * It needs data sets (`[data]` in task.toml), which are not part of this
 * build yet: until they are, it prints why it skips and records nothing.
 *
 *   deno run -A bench/data_path.ts
 *
 * @module
 */
import { TaskSpec } from "../core/schema.ts";
import { type Benchmark, runBenchmark } from "./_util.ts";

/** Why the data-path benchmark cannot run in this build, or null when it can. */
export function dataPathUnavailable(): string | null {
  return "data" in TaskSpec.shape ? null : "data sets ([data] in task.toml) are not part of this build yet";
}

/** The data-path benchmark. */
export const dataPath: Benchmark = {
  name: "data_path",
  summary: "100 MiB package and 1 GiB data set to 2 nodes: MB/s vs the object store, peak memory",
  flags: {},
  tiny: [],
  run() {
    const why = dataPathUnavailable() ?? "the data-path measurement is not written yet for this build's data sets";
    console.log(`data_path: skipped: ${why}.`);
    return Promise.resolve(null);
  },
};

if (import.meta.main) await runBenchmark(dataPath, Deno.args);
