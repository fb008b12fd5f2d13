/**
 * Restarts and second starts, end to end: a folder is held by one manager or
 * node at a time.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { freePort } from "../core/nats_server.ts";
import {
  makeZip,
  managerProcess,
  nodesReady,
  startMainProcess,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  TEST_TOKEN,
} from "./harness.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

const quick = () => makeZip({ "task.toml": `[task]\nentrypoint = "r.sh"\ninstances = 3\n`, "r.sh": "#!/bin/sh\n" });

Deno.test({
  name: "a second manager on the same data dir exits naming the first one's pid; the first runs on untouched",
  ...opts,
  async fn() {
    await using work = await tempDir();
    const dataDir = join(work.path, "m");
    const natsPort = freePort();
    await using first = managerProcess(dataDir, [`--nats-port=${natsPort}`]);
    await first.start();
    await using second = startMainProcess(
      ["manager", `--data-dir=${dataDir}`, `--port=${freePort()}`, `--nats-port=${freePort()}`, "--no-local-node"],
      { env: { PARALLELIC_TOKEN: TEST_TOKEN } },
    );
    assert.equal((await second.child.status).code, 1, second.output());
    assert.match(
      second.output(),
      new RegExp(`data dir ${dataDir} is in use by another Parallelic process \\(pid ${first.pid}\\)`),
    );
    const joinToken = (await Deno.readTextFile(join(dataDir, "join-token"))).trim();
    await using _node = startNodeProcess(`nats://127.0.0.1:${natsPort}`, "n", join(work.path, "n"), [], {
      PARALLELIC_JOIN_TOKEN: joinToken,
    });
    await nodesReady(first.api, ["n"]);
    const id = await first.submit(await quick());
    assert.equal((await first.waitForTask(id)).state, "succeeded", "the first manager's NATS and store still work");
  },
});

Deno.test({
  name: "a second node on the same work dir exits naming the first one's pid; the first runs on untouched",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const dir = join(work.path, "n");
    await using first = startNodeProcess(tm.manager.natsUrl, "first", dir);
    await nodesReady(tm.api, ["first"]);
    await using second = startNodeProcess(tm.manager.natsUrl, "second", dir);
    assert.equal((await second.child.status).code, 1, second.output());
    assert.match(
      second.output(),
      new RegExp(`work dir ${dir} is in use by another Parallelic process \\(pid ${first.child.pid}\\)`),
    );
    const { id } = await (await submitZip(tm, await quick())).json();
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
  },
});
