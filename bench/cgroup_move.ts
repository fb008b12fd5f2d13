/**
 * What moving a process into a cgroup costs, as the node moves each instance
 * into its own just after the spawn: back to back (a busy node) and after a
 * pause without moves (an idle node meeting a new instance), on this
 * machine's cgroup v2 mount, with or without `favordynmods` (see
 * docs/operations.md). Needs root (or a delegated sub-tree) and cgroup v2.
 *
 *   deno run -A bench/cgroup_move.ts [--moves 20] [--idle-ms 100]
 *
 * Not part of `deno task bench`: it explains a step of `bench/user_latency.ts`.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "../cli/args.ts";
import { cgroup2MountInfo } from "../node/cgroup.ts";
import { fmt, intArg, percentile, table } from "./_util.ts";

const args = parseArgs(Deno.args, { moves: "string", "idle-ms": "string" });
const moves = intArg(args, "moves", 20);
const idleMs = intArg(args, "idle-ms", 100);
const mount = cgroup2MountInfo();
if (!mount) {
  console.log("No cgroup v2 mount here: nothing to measure.");
  Deno.exit(0);
}
const dir = join(mount.path, `parallelic-bench-move-${Deno.pid}`);
try {
  Deno.mkdirSync(dir);
} catch (e) {
  console.log(`Cannot make a cgroup under ${mount.path} (${(e as Error).message}): run as root.`);
  Deno.exit(0);
}
const procs = Deno.openSync(join(dir, "cgroup.procs"), { write: true });
const encoder = new TextEncoder();

/** Milliseconds each move of a fresh `sleep` took, with `pauseMs` without moves before each. */
async function measure(pauseMs: number): Promise<number[]> {
  const times: number[] = [];
  for (let i = 0; i < moves; i++) {
    const child = new Deno.Command("sleep", { args: ["5"] }).spawn();
    await new Promise((r) => setTimeout(r, pauseMs));
    const t0 = performance.now();
    procs.writeSync(encoder.encode(String(child.pid)));
    times.push(performance.now() - t0);
    child.kill("SIGKILL");
    await child.status;
  }
  return times.sort((a, b) => a - b);
}

try {
  const rows = [];
  for (const [what, pauseMs] of [["back to back", 0], [`after ${idleMs} ms without a move`, idleMs]] as const) {
    const t = await measure(pauseMs);
    rows.push([what, String(moves), fmt(percentile(t, 50), 3), fmt(percentile(t, 90), 3), fmt(t.at(-1)!, 3)]);
  }
  console.log(`cgroup v2 at ${mount.path}, favordynmods ${mount.favorDynmods ? "on" : "off"}\n`);
  console.log(table(["move", "moves", "p50 ms", "p90 ms", "max ms"], rows));
} finally {
  procs.close();
  Deno.removeSync(dir);
}
