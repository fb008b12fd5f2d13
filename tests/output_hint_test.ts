/**
 * End to end: an instance that wrote files in its workdir but stored no outputs gets a hint naming them and the fix,
 * in its result (API), and in `submit --wait`, `wait`, `status` and `explain` (CLI).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { InstanceView, TaskView } from "../core/schema.ts";
import { runCli, startTestManager, tempDir } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "an instance that wrote files where it runs but stored no outputs gets a hint that names them (API, CLI)",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const cli = (...args: string[]) => runCli(tm, ...args);
    const folder = async (name: string, toml: string, script: string) => {
      const path = join(dir.path, name);
      await Deno.mkdir(path);
      await Deno.writeTextFile(join(path, "task.toml"), `[task]\nentrypoint = "run.sh"\n${toml}`);
      await Deno.writeTextFile(join(path, "run.sh"), `#!/bin/sh\n${script}`);
      await Deno.writeTextFile(join(path, "scene.txt"), "the package's own file\n");
      await Deno.chmod(join(path, "run.sh"), 0o755);
      return path;
    };
    // Writes beside its package's files (and touches one of them), nothing under $PARALLELIC_OUTPUT.
    const wrong = await folder(
      "wrong",
      "instances = 2\n",
      `mkdir -p frames\necho frame > frames/f1.png\necho movie > out.txt\necho again >> scene.txt\n`,
    );
    const sub = await cli("submit", wrong, "--wait");
    assert.equal(sub.code, 0, sub.stderr);
    const hint =
      /stored no outputs, but wrote 'frames\/f1\.png', 'out\.txt' in its workdir: write them under \$PARALLELIC_OUTPUT, or add an \[outputs\] paths glob/;
    assert.match(sub.stderr, /Hint: instance [01] stored no outputs/);
    assert.match(sub.stderr, hint);
    assert.doesNotMatch(sub.stderr, /scene\.txt/, "the package's own files are not named");
    const id = sub.stdout.trim();
    const inst = await (await tm.api(`/api/v1/tasks/${id}/instances/1`)).json() as InstanceView;
    assert.match(inst.history[0].hint ?? "", hint);
    const task = await (await tm.api(`/api/v1/tasks/${id}`)).json() as TaskView;
    assert.match(task.hint ?? "", hint);
    assert.match((await cli("status", id)).stdout, /Hint\s+instance [01] stored no outputs/);
    assert.match(
      (await cli("explain", id, "--instance", "0")).stdout,
      /Instance 0 ended succeeded\. It stored no outputs/,
    );
    const waited = await cli("wait", id);
    assert.equal(waited.code, 0);
    assert.match(waited.stderr, hint);

    // Done right, either way: no hint.
    for (
      const [name, toml, script] of [
        ["output", "", `echo movie > "$PARALLELIC_OUTPUT/out.txt"\n`],
        ["globs", `[outputs]\npaths = ["*.txt"]\n`, `echo movie > out.txt\n`],
        ["nothing", "", `echo "prints only"\n`],
      ]
    ) {
      const res = await cli("submit", await folder(name, toml, script), "--wait");
      assert.equal(res.code, 0, `${name}: ${res.stderr}`);
      assert.doesNotMatch(res.stderr, /Hint/, name);
      const t = await (await tm.api(`/api/v1/tasks/${res.stdout.trim()}`)).json() as TaskView;
      assert.equal(t.hint, null, name);
    }
  },
});
