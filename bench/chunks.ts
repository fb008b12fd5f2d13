/**
 * Chunks: a program that costs 0.2 s to start and 0.02 s per instance (a
 * renderer loading its scene, then rendering frames), N instances on one
 * node, run one instance per process (`chunk = 1`) and ten per process
 * (`chunk = 10`). Wall time from submit to the task's done event.
 *
 *   deno run -A bench/chunks.ts [--instances 200] [--slots 4] [--no-record]
 *
 * Target (BENCHMARKS.md): chunk = 10 at least 5× faster than chunk = 1.
 *
 * @module
 */
import { zipFolder } from "../core/package_zip.ts";
import { join } from "node:path";
import { type Benchmark, fmt, intArg, runBenchmark, table } from "./_util.ts";
import { startCluster } from "./cluster.ts";

/** The start-up-heavy program: 0.2 s to start, then 0.02 s for each instance of its chunk. */
const PROGRAM = `#!/bin/sh
sleep 0.2
n=$(( \${PARALLELIC_INSTANCE_LAST:-$PARALLELIC_INSTANCE} - PARALLELIC_INSTANCE + 1 ))
i=0
while [ $i -lt $n ]; do sleep 0.02; i=$((i + 1)); done
`;

async function chunkPackage(dir: string, instances: number, chunk: number): Promise<Uint8Array> {
  const root = await Deno.makeTempDir({ dir, prefix: "pkg-" });
  await Deno.writeTextFile(join(root, "render.sh"), PROGRAM, { mode: 0o755 });
  await Deno.writeTextFile(
    join(root, "task.toml"),
    `[task]\nentrypoint = "render.sh"\nchunk = ${chunk}\n[task.matrix]\nframe = { from = 1, to = ${instances} }\n`,
  );
  return await zipFolder(root);
}

/** The chunks benchmark. */
export const chunks: Benchmark = {
  name: "chunks",
  summary: "a program with 0.2 s of start-up and 0.02 s per instance: chunk = 10 against chunk = 1",
  flags: { instances: "string", slots: "string" },
  tiny: ["--instances", "20"],
  async run(ctx) {
    const instances = intArg(ctx.args, "instances", 200);
    const slots = intArg(ctx.args, "slots", 4);
    await using cluster = await startCluster(ctx);
    await cluster.addNodes(1, { slots });
    const rows: Array<Array<string | number>> = [];
    const records: Array<Record<string, unknown>> = [];
    const wall = new Map<number, number>();
    for (const chunk of [1, 10]) {
      const zip = await chunkPackage(ctx.dir, instances, chunk);
      const t0 = performance.now();
      const { id } = await cluster.submit(zip);
      const done = await cluster.done(id, 600_000);
      const ms = performance.now() - t0;
      if (done.state !== "succeeded") throw new Error(`chunk = ${chunk}: the task ended ${done.state}`);
      wall.set(chunk, ms);
      records.push({ instances, slots, chunk, processes: Math.ceil(instances / chunk), wallS: ms / 1000 });
      rows.push([`chunk = ${chunk}`, Math.ceil(instances / chunk), fmt(ms / 1000, 2), fmt(instances / (ms / 1000), 1)]);
    }
    const gain = wall.get(1)! / wall.get(10)!;
    const verdict = gain >= 5 ? "meets" : "misses";
    return {
      text:
        `${instances} instances on one node of ${slots} slots: chunk = 10 is ${
          fmt(gain, 1)
        }× faster than chunk = 1 (${verdict} the target of 5×).\n\n` +
        table(["run", "processes", "wall s", "instances/s"], rows),
      command: `--instances ${instances} --slots ${slots}`,
      rows: records.map((r) => ({ ...r, gain })),
    };
  },
};

if (import.meta.main) await runBenchmark(chunks, Deno.args);
