import assert from "node:assert/strict";
import { parseIgnore } from "../cli/ignore.ts";
import { globToRegExp } from "./glob.js";

Deno.test("globToRegExp() matches *, ** and ? within and across folders, anchored by default", () => {
  const out = globToRegExp("out/**");
  assert.ok(out.test("out/a.txt"));
  assert.ok(out.test("out/a/b/c.bin"));
  assert.ok(!out.test("x/out/a.txt"));
  const logs = globToRegExp("*.log");
  assert.ok(logs.test("run.log"));
  assert.ok(!logs.test("sub/run.log"), "* stays within one folder");
  const deep = globToRegExp("**/*.png");
  assert.ok(deep.test("a.png") && deep.test("a/b/c.png"));
  assert.ok(globToRegExp("frame-??.exr").test("frame-07.exr"));
  assert.ok(!globToRegExp("frame-??.exr").test("frame-7.exr"));
  assert.ok(globToRegExp("a+b(1).txt").test("a+b(1).txt"), "regex characters are literal");
  assert.ok(globToRegExp("tmp", { anchored: false, matchChildren: true }).test("x/tmp/y"));
});

Deno.test("parseIgnore() follows gitignore rules: anchoring, folders only, negation", () => {
  const ignore = parseIgnore("# comment\n*.tmp\n/build\ncache/\n!keep.tmp\n");
  assert.ok(ignore("a.tmp", false));
  assert.ok(ignore("deep/b.tmp", false), "unanchored patterns match in any folder");
  assert.ok(!ignore("keep.tmp", false), "! re-includes");
  assert.ok(ignore("build", true));
  assert.ok(!ignore("src/build", true), "a leading / anchors");
  assert.ok(ignore("x/cache", true));
  assert.ok(!ignore("x/cache", false), "a trailing / matches folders only");
});
