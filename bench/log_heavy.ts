/**
 * Log-heavy benchmark: instances that print many lines (50 MB in all by
 * default), run on one node process; it reports the time from submit to
 * done, the rate of log bytes, and checks the last line of each log is kept.
 *
 *   deno run -A bench/log_heavy.ts [--mb 50] [--instances 2] [--slots 2]
 *
 * @module
 */
import { makeZip } from "../tools/make_zip.ts";
import { startCluster } from "./cluster.ts";

const flag = (name: string, fallback: string) => {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Deno.args[at + 1] : fallback;
};
const args = { mb: flag("mb", "50"), instances: flag("instances", "2"), slots: flag("slots", "2") };
const totalMb = Number(args.mb);
const instances = Number(args.instances);
const lineBytes = 100;
const linesEach = Math.ceil(totalMb * 1e6 / instances / lineBytes);

const dir = await Deno.makeTempDir({ prefix: "parallelic-log-heavy-" });
const cluster = await startCluster({ args: { _: [], flags: {} }, dir });
try {
  await cluster.addNodes(1, { slots: Number(args.slots) });
  const zip = await makeZip({
    "task.toml": `[task]\nname = "logs"\nentrypoint = "run.sh"\ninstances = ${instances}\n`,
    "run.sh": {
      content: `#!/bin/sh\nawk 'BEGIN { s = sprintf("%${lineBytes - 12}s", ""); gsub(/ /, "x", s); ` +
        `for (i = 0; i < ${linesEach}; i++) printf "%010d %s\\n", i, s }'\necho "last line $PARALLELIC_INSTANCE"\n`,
      mode: 0o755,
    },
  });
  const started = performance.now();
  const { id } = await cluster.submit(zip);
  const task = await cluster.done(id, 600_000);
  const doneMs = performance.now() - started;
  let kept = 0;
  for (let i = 0; i < instances; i++) {
    const text = await (await cluster.api(`/api/v1/tasks/${id}/instances/${i}/logs`)).text();
    if (text.includes(`last line ${i}`)) kept++;
  }
  const mb = instances * linesEach * lineBytes / 1e6;
  console.log(
    `log_heavy: ${mb.toFixed(0)} MB of log lines from ${instances} instances: ${task.state} in ` +
      `${(doneMs / 1000).toFixed(1)} s (${
        (mb / doneMs * 1000).toFixed(1)
      } MB/s); last line kept in ${kept}/${instances}`,
  );
} finally {
  await cluster.stop();
  await Deno.remove(dir, { recursive: true });
}
