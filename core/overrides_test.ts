import assert from "node:assert/strict";
import { mergeOverrides, overridesFromPairs, parseOverrides } from "./overrides.ts";
import { parseTaskToml } from "./task_toml.ts";

const TOML = `[task]\nentrypoint = "run.sh"\n[task.matrix]\nframe = { from = 1, to = 10, step = 2 }\nscene = ["a"]\n` +
  `[env]\nQ = "low"\nK = "keep"\n`;

Deno.test("overrides merge tables and replace values: a matrix axis is replaced whole, other keys stay", () => {
  const spec = parseTaskToml(TOML, "t", overridesFromPairs(["task.matrix.frame={from=1,to=48}", "env.Q=high"]));
  assert.deepEqual(spec.matrix, [
    { name: "frame", values: Array.from({ length: 48 }, (_, i) => i + 1) },
    { name: "scene", values: ["a"] },
  ]);
  assert.deepEqual(spec.env, { Q: "high", K: "keep" });
  assert.equal(spec.instances, 48);
  assert.deepEqual(
    mergeOverrides({ a: { b: { c: { x: 1, y: 2 }, d: 2 } } }, { a: { b: { c: { x: 3 } } } }),
    { a: { b: { c: { x: 3 }, d: 2 } } },
  );
});

Deno.test("overrides are checked as task.toml is: an unknown key or a bad value is named as theirs", () => {
  assert.throws(
    () => parseTaskToml(TOML, "t", "task.instancez = 5\n"),
    /task\.toml overrides: unknown key 'task\.instancez'/,
  );
  assert.throws(
    () => parseTaskToml(TOML, "t", "limits.priority = 500\n"),
    /task\.toml overrides: key 'limits\.priority'/,
  );
  // One of two keys that exclude each other replaces the other; both in the overrides are refused.
  assert.equal(parseTaskToml(TOML, "t", "task.instances = 5\n").instances, 5);
  assert.throws(
    () => parseTaskToml(TOML, "t", "task.instances = 5\ntask.matrix.x = [1]\n"),
    /overrides: keys 'task.instances' and 'task.matrix' exclude/,
  );
  assert.throws(() => parseOverrides("task = ["), /task\.toml overrides: line 1 is not valid TOML/);
  assert.throws(() => overridesFromPairs(["instances"]), /Cannot read '--set instances': give KEY=VALUE/);
  assert.throws(() => overridesFromPairs(["task..x=1"]), /Cannot read '--set task\.\.x=1'/);
  assert.equal(
    overridesFromPairs(["env.A=1", "env.B=a b", 'task.args=["-x"]']),
    'env.A = 1\nenv.B = "a b"\ntask.args = ["-x"]\n',
  );
  // A key of task.toml itself is still named by its line.
  assert.throws(
    () => parseTaskToml(`[task]\nentrypoint = "r.sh"\nfoo = 1\n`, "t", "env.A = 'x'\n"),
    /task\.toml line 3/,
  );
});
