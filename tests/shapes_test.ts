/**
 * End to end: shapes of work beyond one entrypoint over many instances:
 * command-only tasks (a package that is only task.toml) and a throttle on
 * how many instances run at once.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { runCli, startTestManager, tempDir } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "a folder holding only task.toml runs its command through /bin/sh in the workdir, and its finalize command",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const root = join(dir.path, "only-toml");
    await Deno.mkdir(root);
    await Deno.writeTextFile(
      join(root, "task.toml"),
      `[task]
command = "echo \\"hi $PARALLELIC_INSTANCE from $(basename \\"$(pwd)\\")\\" > \\"$PARALLELIC_OUTPUT/said.txt\\" && test -f task.toml"
instances = 3
[finalize]
command = "cat \\"$PARALLELIC_WORKSPACE\\"/*/said.txt | sort > \\"$PARALLELIC_OUTPUT/all.txt\\""
`,
    );
    const sub = await runCli(tm, "submit", root, "--wait");
    assert.equal(sub.code, 0, sub.stderr);
    const id = sub.stdout.trim();
    const out = join(dir.path, "out");
    const got = await runCli(tm, "results", id, "--finalize", "-o", out);
    assert.equal(got.code, 0, got.stderr);
    const all = await Deno.readTextFile(join(out, "all.txt"));
    // The workdir is the instance's copy of the task root, which holds task.toml (test -f passed: exit 0).
    assert.match(all, /^hi 0 from \S+\nhi 1 from \S+\nhi 2 from \S+\n$/);
    const status = await runCli(tm, "status", id);
    assert.match(status.stdout, /Command\s+echo "hi \$PARALLELIC_INSTANCE/);
  },
});
