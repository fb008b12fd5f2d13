/**
 * Log-heavy benchmark: instances that print many lines (50 MB in all by
 * default), run on one node process; it reports the time from submit to
 * done, the rate of log bytes, and checks the last line of each log is kept.
 *
 *   deno run -A bench/log_heavy.ts [--mb 50] [--instances 2] [--slots 2]
 *
 * @module
 */
import { join } from "node:path";
import { makeZip, nodesReady, startNodeProcess, startTestManager, submitZip, tempDir } from "../tests/kit/mod.ts";

const flag = (name: string, fallback: string) => {
  const at = Deno.args.indexOf(`--${name}`);
  return at >= 0 ? Deno.args[at + 1] : fallback;
};
const args = { mb: flag("mb", "50"), instances: flag("instances", "2"), slots: flag("slots", "2") };
const totalMb = Number(args.mb);
const instances = Number(args.instances);
const lineBytes = 100;
const linesEach = Math.ceil(totalMb * 1e6 / instances / lineBytes);

await using tm = await startTestManager();
await using work = await tempDir();
await using _node = startNodeProcess(tm.manager.natsUrl, "log-node", join(work.path, "n"), [`--slots=${args.slots}`]);
await nodesReady(tm.api, 1);
const zip = await makeZip({
  "task.toml": `[task]\nname = "logs"\nentrypoint = "run.sh"\ninstances = ${instances}\n`,
  "run.sh": {
    content: `#!/bin/sh\nawk 'BEGIN { s = sprintf("%${lineBytes - 12}s", ""); gsub(/ /, "x", s); ` +
      `for (i = 0; i < ${linesEach}; i++) printf "%010d %s\\n", i, s }'\necho "last line $PARALLELIC_INSTANCE"\n`,
    mode: 0o755,
  },
});
const started = performance.now();
const res = await submitZip(tm, zip, "logs");
if (res.status !== 201) throw new Error(await res.text());
const { id } = await res.json();
const task = await tm.waitForTask(id, 600_000);
const doneMs = performance.now() - started;
let kept = 0;
for (let i = 0; i < instances; i++) {
  const text = await (await tm.api(`/api/v1/tasks/${id}/instances/${i}/logs`)).text();
  if (text.includes(`last line ${i}`)) kept++;
}
const mb = instances * linesEach * lineBytes / 1e6;
console.log(
  `log_heavy: ${mb.toFixed(0)} MB of log lines from ${instances} instances: ${task.state} in ` +
    `${(doneMs / 1000).toFixed(1)} s (${(mb / doneMs * 1000).toFixed(1)} MB/s); last line kept in ${kept}/${instances}`,
);
