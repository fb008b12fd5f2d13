/**
 * Helpers shared by the benchmarks: timing, percentiles, tables, what the
 * machine is and how loaded, /proc readings of a process, and how a
 * benchmark runs alone or in the suite and records itself in bench/results/runs.md.
 *
 * @module
 */
import { join } from "node:path";
import { type FlagSpec, parseArgs, type Parsed } from "../cli/args.ts";

/** The repository root. */
export const ROOT = join(import.meta.dirname!, "..");
/** Where runs are recorded, oldest first (BENCHMARKS.md holds the current figures). */
export const RUNS_FILE = join(ROOT, "bench", "results", "runs.md");

/** Runs `fn` and returns its wall time in seconds. */
export async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
}

/** Milliseconds since the epoch, with the sub-millisecond part `Date.now()` drops. */
export const epochMs = (): number => performance.timeOrigin + performance.now();

/** Waits `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The `p`-th percentile (0..100) of `values`, nearest rank. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p / 100 * sorted.length) - 1))];
}

/** Formats a number for a table: thousands separated, `digits` decimals. */
export function fmt(n: number, digits = 0): string {
  return Number.isFinite(n)
    ? n.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits })
    : "-";
}

/** Formats bytes as MiB. */
export const mib = (bytes: number): string => `${fmt(bytes / 2 ** 20, 1)} MiB`;

/** A markdown table from a header row and data rows. */
export function table(header: string[], rows: Array<Array<string | number>>): string {
  const line = (cells: Array<string | number>) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}

/** One line describing this machine. */
export async function machine(): Promise<string> {
  let cpu = "unknown cpu";
  try {
    cpu = (await Deno.readTextFile("/proc/cpuinfo")).match(/model name\s*:\s*(.+)/)?.[1] ?? cpu;
  } catch { /* not linux */ }
  const mem = (Deno.systemMemoryInfo().total / 2 ** 30).toFixed(0);
  return `${navigator.hardwareConcurrency} cores (${cpu}), ${mem} GiB, Deno ${Deno.version.deno}, ${Deno.build.os}`;
}

/** The commit the code is at (`-dirty` when it has uncommitted changes, recorded runs aside). */
export async function commit(): Promise<string> {
  const git = async (...args: string[]) =>
    new TextDecoder().decode((await new Deno.Command("git", { args, cwd: ROOT, stderr: "null" }).output()).stdout)
      .trim();
  try {
    const head = await git("rev-parse", "--short", "HEAD");
    const changed = await git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/results");
    return head + (changed ? "-dirty" : "");
  } catch {
    return "unknown";
  }
}

/** The 1-minute load average (`uptime`'s first figure). */
export function loadAverage(): number {
  return Deno.loadavg()[0];
}

/**
 * Waits (at most `maxWaitMs`) until the 1-minute load average is below
 * `below`: other engineers' tests share this machine.
 */
export async function waitForQuiet(below: number, maxWaitMs: number): Promise<number> {
  const deadline = Date.now() + maxWaitMs;
  while (loadAverage() >= below && Date.now() < deadline) await sleep(5000);
  return loadAverage();
}

/** What /proc says of a process: resident and peak resident memory, CPU seconds. */
export interface ProcStats {
  rssBytes: number;
  peakRssBytes: number;
  /** User + system CPU time, seconds. */
  cpuSeconds: number;
  /** User + system CPU time of its children that ended and were waited for, seconds. */
  childCpuSeconds: number;
}

/** Clock ticks per second of /proc/PID/stat (`getconf CLK_TCK`, 100 on Linux). */
const CLK_TCK = 100;

/** Reads /proc/PID/status and /proc/PID/stat. */
export async function procStats(pid: number): Promise<ProcStats> {
  const status = await Deno.readTextFile(`/proc/${pid}/status`);
  const kb = (field: string) => Number(status.match(new RegExp(`${field}:\\s*(\\d+) kB`))?.[1] ?? NaN) * 1024;
  const stat = await Deno.readTextFile(`/proc/${pid}/stat`);
  // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15,
  // cutime 16, cstime 17.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ").map(Number);
  return {
    rssBytes: kb("VmRSS"),
    peakRssBytes: kb("VmHWM"),
    cpuSeconds: (fields[11] + fields[12]) / CLK_TCK,
    childCpuSeconds: (fields[13] + fields[14]) / CLK_TCK,
  };
}

/** Total size of a Deno KV file with its SQLite write-ahead log and shared-memory files. */
export async function kvBytes(path: string): Promise<number> {
  let total = 0;
  for (const suffix of ["", "-wal", "-shm"]) {
    total += await Deno.stat(path + suffix).then((s) => s.size, () => 0);
  }
  return total;
}

/** What every benchmark gets. */
export interface BenchContext {
  /** Parsed flags of the benchmark. */
  args: Parsed;
  /** Where `--cpu-prof` profiles of the manager and nodes go, when asked for. */
  profileDir?: string;
  /** A temporary folder, removed afterwards. */
  dir: string;
}

/** What a benchmark produced. */
export interface BenchReport {
  /** Markdown: a sentence with the verdict against the target, and the table. */
  text: string;
  /** Flags that reproduce this run, beyond the benchmark's name. */
  command: string;
  /**
   * The table's rows as objects: recorded one JSON object a line in
   * bench/results/NAME.jsonl, each with the commit, date, machine and load.
   */
  rows?: Array<Record<string, unknown>>;
}

/** A benchmark, runnable alone (`deno run -A bench/NAME.ts`) or from the suite (`bench/mod.ts`). */
export interface Benchmark {
  /** Its name and file name: `bench/NAME.ts`. */
  name: string;
  /** What it measures, one line. */
  summary: string;
  /** Its own flags. */
  flags: FlagSpec;
  /** Flags for a smoke run with tiny sizes (the test suite runs it). */
  tiny: string[];
  /** Runs it; returns null with a printed reason when it cannot run here. */
  run(ctx: BenchContext): Promise<BenchReport | null>;
}

/** Flags every benchmark takes. */
export const COMMON_FLAGS: FlagSpec = { record: "boolean", profile: "string", "wait-quiet": "string" };

/** Reads an integer flag (thousands separators `_` or `,` allowed). */
export function intArg(args: Parsed, name: string, fallback: number): number {
  const v = args.flags[name];
  if (v === undefined) return fallback;
  const n = Number(String(v).replace(/[_,]/g, ""));
  if (!Number.isInteger(n) || n < 0) throw new Error(`Flag '--${name}' must be a whole number: got '${v}'`);
  return n;
}

/** Reads a comma-separated list of integers. */
export function intListArg(args: Parsed, name: string, fallback: number[]): number[] {
  const v = args.flags[name];
  if (v === undefined) return fallback;
  return String(v).split(",").map((s) => {
    const n = Number(s.replace(/_/g, ""));
    if (!Number.isInteger(n) || n <= 0) throw new Error(`Flag '--${name}' must list whole numbers: got '${v}'`);
    return n;
  });
}

/**
 * Runs one benchmark: checks the load, makes a temp folder, prints its table
 * and, unless `--no-record`, appends it to bench/results/runs.md with the date, the
 * machine, the load and the command.
 */
export async function runBenchmark(bench: Benchmark, argv: string[]): Promise<BenchReport | null> {
  const args = parseArgs(argv, { ...COMMON_FLAGS, ...bench.flags });
  const record = args.flags.record !== false;
  const profileDir = args.flags.profile as string | undefined;
  const quiet = args.flags["wait-quiet"];
  if (quiet !== undefined) await waitForQuiet(Number(quiet), 120_000);
  const loadBefore = loadAverage();
  if (loadBefore > 1) {
    console.error(`bench ${bench.name}: the load average is ${loadBefore.toFixed(2)}: other work shares this machine`);
  }
  const dir = await Deno.makeTempDir({ prefix: `parallelic-bench-${bench.name}-` });
  let report: BenchReport | null;
  try {
    if (profileDir) await Deno.mkdir(profileDir, { recursive: true });
    report = await bench.run({ args, profileDir, dir });
  } finally {
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  const loadAfter = loadAverage();
  if (!report) return null;
  console.log(`\n${report.text}\n`);
  if (record) {
    const command = `deno run -A bench/${bench.name}.ts${report.command ? ` ${report.command}` : ""}`;
    const load = `1-minute load average ${loadBefore.toFixed(2)} before, ${loadAfter.toFixed(2)} after` +
      (loadBefore > 1
        ? " (the machine was shared with other work: wall times are longer and noisier than on an idle machine)"
        : "");
    await appendBenchmark(bench.name, command, report.text, `${await machine()}; ${load}; code ${await commit()}`);
    if (report.rows) await appendRows(bench.name, command, report.rows, [loadBefore, loadAfter]);
  }
  return report;
}

/**
 * Appends a section to {@linkcode RUNS_FILE} (date, machine, command, and the text),
 * then formats the file with `deno fmt` so that `deno fmt --check` stays green.
 */
export async function appendBenchmark(name: string, command: string, text: string, machineLine: string) {
  const file = RUNS_FILE;
  let doc = "";
  try {
    doc = await Deno.readTextFile(file);
  } catch {
    doc = "# Benchmark runs\n\nAppended by `deno task bench` (or one benchmark alone), oldest first.\n";
  }
  doc += `\n### ${name} — ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC\n\n` +
    `Machine: ${machineLine}\n\nCommand: \`${command}\`\n\n${text}\n`;
  await Deno.writeTextFile(file, doc);
  await new Deno.Command(Deno.execPath(), { args: ["fmt", "-q", file], cwd: ROOT, stdout: "null" }).output();
}

/** What `uptime` prints (its load averages over 1, 5 and 15 minutes). */
export async function uptime(): Promise<string> {
  const out = await new Deno.Command("uptime", { stdout: "piped", stderr: "null" }).output().catch(() => null);
  return out?.success ? new TextDecoder().decode(out.stdout).trim() : `load average ${Deno.loadavg().join(", ")}`;
}

/**
 * Appends `rows` to bench/results/NAME.jsonl, one JSON object a line, each
 * with the run's date, commit, machine, command, `uptime` and the 1-minute
 * load average before and after.
 */
export async function appendRows(
  name: string,
  command: string,
  rows: Array<Record<string, unknown>>,
  [loadBefore, loadAfter]: number[],
) {
  const common = {
    at: new Date().toISOString(),
    commit: await commit(),
    machine: await machine(),
    command,
    uptime: await uptime(),
    loadBefore,
    loadAfter,
  };
  const lines = rows.map((row) => JSON.stringify({ ...common, ...row })).join("\n");
  await Deno.writeTextFile(join(ROOT, "bench", "results", `${name}.jsonl`), `${lines}\n`, { append: true });
}
