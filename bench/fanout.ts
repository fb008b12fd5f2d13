/**
 * Fan-out benchmark: a manager (embedded NATS, no local node) and two node
 * processes of one slot each run N instances of `true`; in the same run,
 * `seq N | xargs -P2 -n1 true` and `parallel -j2 true` on the same machine.
 *
 *   deno run -A bench/fanout.ts [--instances 10000] [--no-record]
 *
 * Prints a table and appends it to BENCHMARKS.md (unless --no-record).
 *
 * @module
 */
import { join } from "node:path";
import { createLogger } from "../core/log.ts";
import { zipFolder } from "../core/package.ts";
import type { NodeRecord, TaskView } from "../core/schema.ts";
import { startManager } from "../manager/mod.ts";
import { startNodeProcess } from "../tests/harness.ts";
import { appendBenchmark, machine, time } from "./_util.ts";

const args = Deno.args;
const flag = (name: string, fallback: string) => {
  const i = args.findIndex((a) => a === `--${name}` || a.startsWith(`--${name}=`));
  if (i < 0) return fallback;
  return args[i].includes("=") ? args[i].split("=")[1] : args[i + 1];
};
const instances = Number(flag("instances", "10000"));
const record = !args.includes("--no-record");

async function sh(command: string): Promise<void> {
  const out = await new Deno.Command("bash", { args: ["-c", command], stdout: "null", stderr: "piped" }).output();
  if (!out.success) throw new Error(`'${command}' failed: ${new TextDecoder().decode(out.stderr)}`);
}

const dir = await Deno.makeTempDir({ prefix: "parallelic-bench-" });
const log = createLogger({ level: "warn" });
const manager = await startManager({
  dataDir: join(dir, "manager"),
  port: 0,
  natsPort: 0,
  localNode: false,
  token: "bench",
  log,
});
const nodes = ["a", "b"].map((n) => startNodeProcess(manager.natsUrl, `bench-${n}`, join(dir, n), ["--slots=1"]));
try {
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`${manager.url}${path}`, { ...init, headers: { ...init.headers, authorization: "Bearer bench" } });
  for (;;) {
    const { nodes: joined } = await (await api("/api/v1/nodes")).json() as { nodes: NodeRecord[] };
    if (joined.length === 2) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  // The package holds a copy of `true`, so that every tool runs the same binary.
  const root = join(dir, "pkg");
  await Deno.mkdir(root);
  await Deno.copyFile("/usr/bin/true", join(root, "true"));
  await Deno.writeTextFile(join(root, "task.toml"), `[task]\nentrypoint = "true"\ninstances = ${instances}\n`);
  const zip = await zipFolder(root);

  const parallelic = await time(async () => {
    const res = await api("/api/v1/tasks", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: zip,
    });
    const { id } = await res.json();
    for (;;) {
      const task = await (await api(`/api/v1/tasks/${id}`)).json() as TaskView;
      if (task.state === "succeeded") return;
      if (task.state === "failed" || task.state === "cancelled") throw new Error(`task ${task.state}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  const xargs = await time(() => sh(`seq ${instances} | xargs -P2 -n1 /usr/bin/true`));
  const gnuParallel = await time(() => sh(`seq ${instances} | parallel -j2 /usr/bin/true`));

  const rows = [
    ["tool", "wall s", "ms/instance", "vs xargs"],
    ["parallelic (2 nodes x 1 slot)", parallelic, parallelic / instances * 1000, parallelic / xargs],
    ["xargs -P2", xargs, xargs / instances * 1000, 1],
    ["GNU parallel -j2", gnuParallel, gnuParallel / instances * 1000, gnuParallel / xargs],
  ].map((r) => r.map((c) => typeof c === "number" ? c.toFixed(3) : c));
  const table = rows.map((r) => `| ${r.join(" | ")} |`);
  table.splice(1, 0, "| --- | --- | --- | --- |");
  const text = [
    `Fan-out: ${instances} instances of \`true\`; Parallelic ${
      (parallelic / xargs).toFixed(2)
    }x xargs (target <= 1.5x), GNU parallel ${(gnuParallel / parallelic).toFixed(2)}x Parallelic (target >= 4x).`,
    "",
    ...table,
  ].join("\n");
  console.log(text);
  if (record) {
    await appendBenchmark("fanout", `deno run -A bench/fanout.ts --instances ${instances}`, text, await machine());
  }
} finally {
  for (const n of nodes) await n.kill("SIGTERM");
  await manager.stop();
  await Deno.remove(dir, { recursive: true }).catch(() => {});
}
