/**
 * Operability, end to end: metrics of the manager and of a node.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort } from "../core/nats_server.ts";
import {
  makeZip,
  ROOT,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  TEST_TOKEN,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "GET /metrics reports tasks, instances, nodes, durations and bytes; a node serves its own",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const port = freePort();
    await using _node = startNodeProcess(tm.manager.natsUrl, "m1", join(work.path, "n"), [
      "--slots=2",
      `--metrics-port=${port}`,
    ]);
    await waitUntil(async () => (await (await tm.api("/api/v1/nodes")).json()).nodes.length === 1);
    const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\ninstances = 5\n`, "r.sh": "#!/bin/sh\n" });
    const { id } = await (await submitZip(tm, zip)).json();
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
    assert.equal((await tm.api("/metrics", { token: null })).status, 401, "metrics need a token");
    const text = await (await tm.api("/metrics")).text();
    assert.match(text, /parallelic_instances_dispatched_total 5\n/);
    assert.match(text, /parallelic_instance_attempts_ended_total\{outcome="succeeded"\} 5\n/);
    assert.match(text, /parallelic_instance_duration_seconds_count 5\n/);
    assert.match(text, /parallelic_tasks_finished_total\{state="succeeded"\} 1\n/);
    assert.match(text, /parallelic_nodes\{state="ready"\} 1\n/);
    assert.match(text, /parallelic_node_slots\{kind="total"\} 2\n/);
    assert.match(text, /parallelic_instances\{state="queued"\} 0\n/);
    assert.match(text, new RegExp(`parallelic_upload_bytes_total ${zip.byteLength}\\n`));
    assert.match(text, /parallelic_object_store_bytes\{bucket="packages"\} [1-9]\d*\n/);
    assert.match(text, /parallelic_rejected_messages 0\n/);
    const nodeText = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(nodeText, /parallelic_node_instances_finished 5\n/);
    assert.match(nodeText, /parallelic_node_package_fetches 1\n/);
  },
});

Deno.test({
  name: "parallelic doctor passes against a healthy manager and names what is wrong otherwise",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 1 });
    const doctor = async (token: string) => {
      const out = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(ROOT, "main.ts"),
          "doctor",
          `--manager=${tm.manager.url}`,
          `--nats=${tm.manager.natsUrl}`,
          `--data-dir=${tm.dataDir}`,
        ],
        env: { PARALLELIC_TOKEN: token },
        stdout: "piped",
      }).output();
      return { code: out.code, text: new TextDecoder().decode(out.stdout) };
    };
    const good = await doctor(TEST_TOKEN);
    assert.equal(good.code, 0, good.text);
    assert.match(good.text, /ok\s+NATS reachable\s+.*requires credentials/);
    assert.match(good.text, /ok\s+JetStream\s+the manager reads its object store/);
    assert.match(good.text, /ok\s+clock skew local/);
    assert.match(
      good.text,
      /ok\s+limits local\s+CPUs pinned with sched_setaffinity; memory (held by cgroup v2 memory\.max|watched \(RSS)/,
    );
    assert.match(good.text, /All \d+ checks passed/);
    const bad = await doctor("wrong-token");
    assert.equal(bad.code, 1);
    assert.match(bad.text, /FAIL token valid\s+Invalid token/);
    assert.match(bad.text, /-> set PARALLELIC_TOKEN or run 'parallelic login/);
  },
});
