/**
 * Sums a V8 CPU profile (`deno run --cpu-prof`): self and inclusive time per
 * function, biggest first. The benchmarks write profiles of the manager and
 * the nodes with `--profile DIR`.
 *
 *   deno run -A bench/profile.ts DIR|FILE.cpuprofile [--top 30] [--filter text]
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "../cli/args.ts";
import { fmt, table } from "./_util.ts";

/** The parts of a `.cpuprofile` that matter here. */
export interface CpuProfile {
  nodes: Array<{
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }>;
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

/** Time spent in one function, in ms. */
export interface FunctionTime {
  name: string;
  selfMs: number;
  totalMs: number;
}

const shortUrl = (url: string) => {
  const i = url.lastIndexOf("/work/");
  const npm = url.indexOf("/node_modules/");
  if (npm >= 0) return url.slice(npm + 14).replace(/^\.deno\//, "");
  return i >= 0 ? url.slice(url.indexOf("/", i + 6) + 1) : url.replace(/^.*\//, "");
};

/** Self and inclusive time per function (name and place), sorted by self time. */
export function summarize(profile: CpuProfile): { totalMs: number; functions: FunctionTime[] } {
  const parent = new Map<number, number>();
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (id: number) => {
    const f = byId.get(id)!.callFrame;
    return f.url ? `${f.functionName || "(anonymous)"} ${shortUrl(f.url)}:${f.lineNumber + 1}` : f.functionName;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let totalMs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    // A sample's time is the gap to the next sample.
    const ms = (profile.timeDeltas[i + 1] ?? 0) / 1000;
    totalMs += ms;
    const leaf = profile.samples[i];
    self.set(keyOf(leaf), (self.get(keyOf(leaf)) ?? 0) + ms);
    const seen = new Set<string>();
    for (let id: number | undefined = leaf; id !== undefined; id = parent.get(id)) {
      const key = keyOf(id);
      if (seen.has(key)) continue;
      seen.add(key);
      total.set(key, (total.get(key) ?? 0) + ms);
    }
  }
  const functions = [...total.entries()].map(([name, t]) => ({ name, selfMs: self.get(name) ?? 0, totalMs: t }));
  functions.sort((a, b) => b.selfMs - a.selfMs);
  return { totalMs, functions };
}

/** Renders the top `top` functions by self time and by inclusive time as markdown. */
export function renderProfile(profile: CpuProfile, top = 25, filter?: string): string {
  const { totalMs, functions } = summarize(profile);
  const pick = (fs: FunctionTime[]) => (filter ? fs.filter((f) => f.name.includes(filter)) : fs).slice(0, top);
  const pct = (ms: number) => `${fmt(ms / totalMs * 100, 1)}%`;
  const rows = (fs: FunctionTime[]) => fs.map((f) => [`\`${f.name}\``, fmt(f.selfMs), pct(f.selfMs), fmt(f.totalMs)]);
  const byTotal = [...functions].sort((a, b) => b.totalMs - a.totalMs)
    .filter((f) => !f.name.startsWith("(")); // (root), (program), (idle), (garbage collector)
  return [
    `Profile of ${fmt(totalMs)} ms (${fmt((profile.endTime - profile.startTime) / 1000)} ms wall).`,
    "",
    "By self time:",
    "",
    table(["function", "self ms", "self", "inclusive ms"], rows(pick(functions))),
    "",
    "By inclusive time:",
    "",
    table(["function", "self ms", "self", "inclusive ms"], rows(pick(byTotal))),
  ].join("\n");
}

if (import.meta.main) {
  const args = parseArgs(Deno.args, { top: "string", filter: "string" });
  const path = args._[0];
  if (!path) {
    console.error("usage: deno run -A bench/profile.ts DIR|FILE.cpuprofile [--top 30] [--filter text]");
    Deno.exit(2);
  }
  const files = (await Deno.stat(path)).isDirectory
    ? [...Deno.readDirSync(path)].filter((e) => e.name.endsWith(".cpuprofile")).map((e) => join(path, e.name))
    : [path];
  for (const file of files) {
    console.log(`\n### ${file}\n`);
    const profile = JSON.parse(await Deno.readTextFile(file)) as CpuProfile;
    console.log(renderProfile(profile, Number(args.flags.top ?? 25), args.flags.filter as string | undefined));
  }
}
