/**
 * The single binary: built with `deno compile` where a runtime is available
 * (DENORT_BIN), and run.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { compile, HOST_TARGET, NOT_PARALLELIC } from "../tools/compile.ts";
import { tempDir } from "./kit/mod.ts";

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

Deno.test({
  name: "deno task compile with a DENORT_BIN that is plain deno fails, saying the binary is not Parallelic",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using dir = await tempDir();
    const fake = join(dir.path, "denort");
    await Deno.copyFile(Deno.execPath(), fake);
    const out = join(dir.path, "parallelic");
    const why = await compile(HOST_TARGET, out, fake);
    assert.match(why ?? "built", new RegExp(`^${NOT_PARALLELIC}: '.*' answered 'deno \\d`));
    assert.match(why!, /DENORT_BIN=.* must be the denort runtime/);
    await assert.rejects(Deno.stat(out), Deno.errors.NotFound, "no binary is left that passes for a release");
  },
});
