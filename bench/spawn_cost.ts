/**
 * What starting a process costs the node's own process, by way of starting
 * it: `Deno.Command` with piped output read to the end (how nodes started
 * instances before), `Deno.Command` with no output, and the node's spawner
 * (`posix_spawn` through FFI, output into files, see node/spawn.ts). Two at a
 * time, like two slots; CPU time from /proc/self/stat (ours, and our
 * children's: the processes themselves).
 *
 *   deno run -A bench/spawn_cost.ts [--processes 4000]
 *
 * Not part of `deno task bench`: it explains a part of `bench/fanout.ts`.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "../cli/args.ts";
import { systemClock } from "../core/clock.ts";
import { loadLibc } from "../node/libc.ts";
import { createSpawner } from "../node/spawn.ts";
import { fmt, intArg, table } from "./_util.ts";

/** CPU milliseconds used so far by this process and by its reaped children. */
function cpuMs(): { self: number; children: number } {
  const stat = Deno.readTextFileSync("/proc/self/stat");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  const tick = 10; // USER_HZ is 100 on Linux
  return { self: (f[11] + f[12]) * tick, children: (f[13] + f[14]) * tick };
}

/** Runs `one` n times, two at a time; returns wall and CPU ms per process. */
async function measure(n: number, one: (slot: number) => Promise<void>) {
  const c0 = cpuMs();
  const t0 = performance.now();
  let next = 0;
  await Promise.all([0, 1].map(async (slot) => {
    while (next++ < n) await one(slot);
  }));
  const wall = performance.now() - t0;
  const c1 = cpuMs();
  return { wall: wall / n, self: (c1.self - c0.self) / n, children: (c1.children - c0.children) / n };
}

if (import.meta.main) {
  const args = parseArgs(Deno.args, { processes: "string" });
  const n = intArg(args, "processes", 4000);
  const dir = await Deno.makeTempDir({ prefix: "parallelic-spawn-cost-" });
  const libc = loadLibc();
  const spawner = libc ? createSpawner({ libc, clock: systemClock }) : null;
  const rows: string[][] = [];
  const ways: Array<[string, (slot: number) => Promise<void>]> = [
    ["Deno.Command, piped output read to the end", async () => {
      const child = new Deno.Command("/usr/bin/true", { stdin: "null", stdout: "piped", stderr: "piped" }).spawn();
      await Promise.all([
        child.status,
        child.stdout.pipeTo(new WritableStream()),
        child.stderr.pipeTo(new WritableStream()),
      ]);
    }],
    ["Deno.Command, no output", async () => {
      await new Deno.Command("/usr/bin/true", { stdin: "null", stdout: "null", stderr: "null" }).spawn().status;
    }],
  ];
  if (spawner) {
    ways.push(["node spawner: posix_spawn, output into files", async (slot) => {
      const proc = await spawner.start({
        command: "/usr/bin/true",
        args: [],
        cwd: dir,
        env: { PATH: "/usr/bin:/bin" },
        stdoutPath: join(dir, `${slot}.stdout`),
        stderrPath: join(dir, `${slot}.stderr`),
        onOutput: () => {},
      });
      await proc.ended;
    }]);
  }
  for (const [name, one] of ways) {
    await measure(200, one); // warm up
    const r = await measure(n, one);
    rows.push([name, fmt(r.wall, 3), fmt(r.self, 3), fmt(r.children, 3)]);
  }
  await Deno.remove(dir, { recursive: true });
  console.log(`\n${n} processes of \`true\`, two at a time${spawner ? "" : " (no C library: posix_spawn skipped)"}\n`);
  console.log(table(["way", "wall ms/process", "our CPU ms/process", "children's CPU ms/process"], rows));
}
