/**
 * Backup and restore of the manager: its data dir (Deno KV and the embedded
 * JetStream) copied while it is stopped mid-run, restored later, and the
 * task still completes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort } from "../core/nats_server.ts";
import type { TaskView } from "../core/schema.ts";
import { listInstances, makeZip, managerProcess, startNodeProcess, tempDir, waitUntil } from "./kit/mod.ts";

Deno.test({
  name: "a manager restored from a backup taken mid-run completes the task",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir();
    const dataDir = join(work.path, "data");
    const backup = join(work.path, "backup");
    const natsPort = freePort();
    await using manager = managerProcess(dataDir, [`--nats-port=${natsPort}`, "--heartbeat-ms=200", "--lease-ms=3000"]);
    const api = manager.api;
    const stop = async () => assert.equal((await manager.stop("SIGTERM"))?.code, 0);
    const task = async (id: string) => await (await api(`/api/v1/tasks/${id}`)).json() as TaskView;
    await manager.start();
    await using _node = startNodeProcess(`nats://127.0.0.1:${natsPort}`, "a", join(work.path, "a"), [
      "--slots=2",
      `--join-token-file=${join(dataDir, "join-token")}`,
    ]);
    await waitUntil(async () => (await (await api("/api/v1/nodes")).json()).nodes.length === 1, 20_000, "node");
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 16\n`,
      "run.sh": `#!/bin/sh\nsleep 0.4\necho "out $PARALLELIC_INSTANCE"\n`,
    });
    const id = await manager.submit(zip);
    await waitUntil(async () => (await task(id)).counts.succeeded >= 4, 30_000, "some progress");
    // Back up: stop the manager, copy its data dir, start it again.
    await stop();
    await new Deno.Command("cp", { args: ["-a", dataDir, backup] }).output();
    const atBackup = (await Deno.readDir(backup)[Symbol.asyncIterator]().next()).done === false;
    assert.ok(atBackup, "the backup holds files");
    await manager.start();
    // Right after the restart the manager's state is the backup's, plus results nodes held meanwhile.
    const backedUp = (await task(id)).counts.succeeded;
    await waitUntil(async () => (await task(id)).counts.succeeded >= backedUp + 4, 60_000, "more progress");
    // Restore: stop, replace the data dir with the backup, start.
    await stop();
    await Deno.remove(dataDir, { recursive: true });
    await new Deno.Command("cp", { args: ["-a", backup, dataDir] }).output();
    await manager.start();
    const restored = await task(id);
    assert.ok(
      restored.counts.succeeded <= backedUp,
      `the restored state is the backup's (${restored.counts.succeeded})`,
    );
    const done = await manager.waitForTask(id, 90_000);
    const instances = await listInstances(api, id);
    assert.equal(done.state, "succeeded", JSON.stringify(instances.filter((i) => i.state !== "succeeded")));
    for (const i of instances) {
      assert.equal(i.state, "succeeded");
      assert.equal(i.history.filter((h) => h.exitCode !== null).length, 1, `instance ${i.index}: one result`);
    }
    assert.match(await (await api(`/api/v1/tasks/${id}/instances/15/logs`)).text(), /out 15/);
  },
});
