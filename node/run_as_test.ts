import assert from "node:assert/strict";
import { asUser, resolveRunAs } from "./run_as.ts";

Deno.test({
  name: "run-as starts instances through setpriv by its absolute path, never looked up in an instance's PATH",
  ignore: Deno.build.os !== "linux" || Deno.uid() !== 0,
  fn() {
    const runAs = resolveRunAs("nobody");
    assert.match(runAs.setpriv, /^\/.*\/setpriv$/);
    const start = asUser(runAs, "/runs/c1/run.sh", ["a"]);
    assert.equal(start.command, runAs.setpriv);
    assert.deepEqual(start.args.slice(-3), ["--", "/runs/c1/run.sh", "a"]);
  },
});
