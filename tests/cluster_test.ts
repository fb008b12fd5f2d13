/**
 * Beyond one machine: a 3-server NATS cluster with replicated JetStream.
 * Losing one server loses nothing.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { jetstreamManager } from "@nats-io/jetstream";
import { connect } from "@nats-io/transport-node";
import { LOG_STREAM, PACKAGE_BUCKET } from "../core/schema.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  startNodeProcess,
  startTestCluster,
  startTestManager,
  submitZip,
  tempDir,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "on a 3-server NATS cluster with --replicas 3, killing one server mid-run loses nothing",
  ...opts,
  async fn() {
    await using cluster = await startTestCluster(3);
    await using tm = await startTestManager({ natsUrl: cluster.urls, replicas: 3, leaseMs: 5000 });
    await using work = await tempDir();
    // Each node prefers a different server.
    const rotated = (k: number) =>
      [...cluster.urls.split(",").slice(k), ...cluster.urls.split(",").slice(0, k)].join(",");
    await using _a = startNodeProcess(rotated(0), "a", join(work.path, "a"), ["--slots=3"]);
    await using _b = startNodeProcess(rotated(2), "b", join(work.path, "b"), ["--slots=3"]);
    await nodesReady(tm.api, ["a", "b"]);
    const nc = await connect({ servers: cluster.urls.split(",") });
    try {
      const jsm = await jetstreamManager(nc);
      assert.equal((await jsm.streams.info(`OBJ_${PACKAGE_BUCKET}`)).config.num_replicas, 3);
      assert.equal((await jsm.streams.info(LOG_STREAM)).config.num_replicas, 3);
    } finally {
      await nc.close();
    }
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 60\n`,
      "run.sh": `#!/bin/sh\nsleep 0.3\necho "out $PARALLELIC_INSTANCE"\n`,
    });
    const { id } = await (await submitZip(tm, zip)).json();
    await waitUntil(async () => (await (await tm.api(`/api/v1/tasks/${id}`)).json()).counts.succeeded >= 10);
    await cluster.servers[2].kill("SIGKILL");
    const task = await tm.waitForTask(id, 90_000);
    assert.equal(task.state, "succeeded");
    const instances = await listInstances(tm.api, id);
    for (const i of instances) {
      assert.equal(i.state, "succeeded");
      assert.equal(i.history.filter((h) => h.exitCode === 0).length, 1, `instance ${i.index}: one result`);
    }
    const missing: number[] = [];
    for (let k = 0; k < 60; k++) {
      if (!(await (await tm.api(`/api/v1/tasks/${id}/instances/${k}/logs`)).text()).includes(`out ${k}`)) {
        missing.push(k);
      }
    }
    assert.deepEqual(missing, [], "every instance's log survives the loss of a server");
  },
});
