/**
 * Smoke runs of every benchmark with tiny sizes and `--no-record`, so that
 * they cannot rot. No timing is asserted: speed targets live in the
 * benchmarks' own output, never in tests.
 *
 * @module
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { ROOT } from "./_util.ts";
import { BENCHMARKS, dataPathUnavailable } from "./mod.ts";

for (const bench of BENCHMARKS) {
  Deno.test(`the ${bench.name} benchmark runs with tiny sizes and prints its table`, async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", join(ROOT, "bench", "mod.ts"), "--only", bench.name, "--tiny", "--no-record"],
      cwd: ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout);
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `bench/${bench.name}.ts failed:\n${stdout}\n${stderr}`);
    if (bench.name === "data_path" && await dataPathUnavailable()) {
      assert.match(stdout, /data_path: skipped: .+/);
      return;
    }
    assert.match(stdout, /\n\| --- \|/, `no table in:\n${stdout}`);
    // Their smoke runs are traced: each process noted its steps where they happen (the gateway, the task actor,
    // the node, the client; for the user path also the event stream and the CLI).
    const traced: Record<string, string[]> = {
      latency: ["gateway.checked", "task.submit", "task.committed #2", "node.spawn", "node.result"],
      user_latency: ["gateway.read", "gateway.event #2", "client.event", "cli.start", "cli.answered", "cli.done"],
    };
    for (const step of traced[bench.name] ?? []) {
      assert.match(stdout, new RegExp(`\\| ${step.replace(".", "\\.")} +\\|`), `step ${step} in:\n${stdout}`);
    }
  });
}
