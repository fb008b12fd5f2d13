/**
 * Data set visibility over HTTP and the CLI: a data set is its uploader's
 * alone until shared; others neither list, read nor name it in a task (the
 * submit is refused naming it), and sharing opens it to them.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { addApiUser, makeZip, runCli, startTestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "an unshared data set is invisible and unusable to other submitters until its owner shares it",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const alice = await addApiUser(tm, "alice");
    const bob = await addApiUser(tm, "bob");
    const cli = (token: string, ...args: string[]) =>
      runCli({ PARALLELIC_MANAGER: tm.manager.url, PARALLELIC_TOKEN: token }, ...args);
    const dir = await Deno.makeTempDir();
    try {
      await Deno.writeTextFile(join(dir, "in.txt"), "secret");
      const put = await cli(alice, "data", "put", "scans", dir);
      assert.equal(put.code, 0, put.stderr);

      const names = async (token: string) =>
        (await (await tm.api("/api/v1/data", { token })).json()).datasets.map((d: { name: string }) => d.name);
      assert.deepEqual(await names(alice), ["scans"]);
      assert.deepEqual(await names(bob), [], "bob does not list it");
      assert.deepEqual(await names(tm.token), ["scans"], "an admin does");
      assert.equal((await tm.api("/api/v1/data/scans", { token: bob })).status, 404);
      const bobLs = await cli(bob, "data", "ls");
      assert.doesNotMatch(bobLs.stdout, /scans/);

      const zip = await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\n\n[data]\nscans = "scans"\n`,
        "run.sh": '#!/bin/sh\ncat "$PARALLELIC_DATA_SCANS/in.txt"\n',
      });
      const submit = (token: string) =>
        tm.api("/api/v1/tasks?name=uses-scans", {
          method: "POST",
          token,
          headers: { "content-type": "application/zip" },
          body: zip as Uint8Array<ArrayBuffer>,
        });
      const refused = await submit(bob);
      const body = await refused.json();
      assert.equal(refused.status, 400);
      assert.equal(body.error.code, "unknown_data_set");
      assert.match(body.error.message, /key 'data.scans' = "scans": data set 'scans' does not exist or is not shared/);
      assert.equal((await submit(alice)).status, 201, "its owner may use it");

      // Bob may neither share it nor upload over it.
      const patch = (token: string, shared: unknown) =>
        tm.api("/api/v1/data/scans", {
          method: "PATCH",
          token,
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ shared }),
        });
      assert.equal((await patch(bob, true)).status, 404);
      assert.equal((await patch(alice, "yes")).status, 400, "shared is a boolean");
      const taken = await cli(bob, "data", "put", "scans", dir);
      assert.notEqual(taken.code, 0);
      assert.match(taken.stderr, /another user's data set, not shared with you, has that name/);

      const shared = await cli(alice, "data", "share", "scans");
      assert.equal(shared.code, 0, shared.stderr);
      assert.match(shared.stdout, /scans \(owner alice\) is shared with every user/);
      assert.deepEqual(await names(bob), ["scans"]);
      assert.equal((await submit(bob)).status, 201, "shared: bob's task may use it");
      assert.equal((await patch(bob, false)).status, 403, "only its owner or an admin changes sharing");

      // Shared at upload; the audit log records sharing changes.
      const open = await cli(bob, "data", "put", "public", dir, "--shared");
      assert.equal(open.code, 0, open.stderr);
      assert.deepEqual(await names(alice), ["public", "scans"]);
      const { entries } = await (await tm.api("/api/v1/audit?limit=100")).json();
      assert.ok(
        entries.some((e: { action: string; target: string }) => e.action === "data.share" && e.target === "scans"),
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
