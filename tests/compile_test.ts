/**
 * The single binary: built with `deno compile` where a runtime is available
 * (DENORT_BIN), and run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compile, HOST_TARGET } from "../tools/compile.ts";
import { tempDir } from "./harness.ts";

const denort = Deno.env.get("DENORT_BIN");
if (!denort) {
  console.log(
    "compile test skipped: DENORT_BIN is not set, and deno compile cannot download its runtime (denort) here",
  );
}

Deno.test({
  name: "deno task compile builds a parallelic binary that runs the CLI",
  ignore: !denort,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const out = join(dir.path, "parallelic");
    const why = await compile(HOST_TARGET, out);
    assert.equal(why, null, why ?? "");
    const help = await new Deno.Command(out, { args: ["help"], stdout: "piped" }).output();
    assert.equal(help.code, 0);
    assert.match(new TextDecoder().decode(help.stdout), /parallelic: run many instances/);
  },
});
