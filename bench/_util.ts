/**
 * Helpers shared by the benchmarks.
 *
 * @module
 */
import { join } from "node:path";

/** The repository root. */
export const ROOT = join(import.meta.dirname!, "..");

/** Runs `fn` and returns its wall time in seconds. */
export async function time(fn: () => Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  await fn();
  return (performance.now() - t0) / 1000;
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

/** Appends a section to BENCHMARKS.md: date, machine, command, and the table. */
export async function appendBenchmark(name: string, command: string, table: string, machineLine: string) {
  const file = join(ROOT, "BENCHMARKS.md");
  let text = "";
  try {
    text = await Deno.readTextFile(file);
  } catch {
    text = "# Benchmarks\n\nEvery figure below comes from the command written next to it.\n";
  }
  text += `\n## ${name} — ${new Date().toISOString().slice(0, 16).replace("T", " ")} UTC\n\n` +
    `Machine: ${machineLine}\n\nCommand: \`${command}\`\n\n${table}\n`;
  await Deno.writeTextFile(file, text);
}
