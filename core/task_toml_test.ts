import assert from "node:assert/strict";
import { ValidationError } from "./errors.ts";
import {
  lineOf,
  matrixParams,
  normalizeRelative,
  parseBytes,
  parseDurationMs,
  parseTaskToml,
  runSpecProblem,
} from "./task_toml.ts";

function rejects(source: string, pattern: RegExp): ValidationError {
  try {
    parseTaskToml(source);
  } catch (e) {
    assert.ok(e instanceof ValidationError, `expected ValidationError, got ${e}`);
    assert.match(e.message, pattern);
    return e;
  }
  assert.fail(`expected task.toml to be rejected:\n${source}`);
}

Deno.test("parseTaskToml() fills defaults for a minimal task", () => {
  const spec = parseTaskToml(`[task]\nentrypoint = "run.sh"\n`, "hello");
  assert.equal(spec.name, "hello");
  assert.equal(spec.entrypoint, "run.sh");
  assert.equal(spec.workdir, ".");
  assert.deepEqual(spec.args, []);
  assert.equal(spec.instances, 1);
  assert.equal(spec.cpus, 1);
  assert.equal(spec.retries, 0);
  assert.equal(spec.priority, 50);
  assert.equal(spec.timeoutMs, null);
});

Deno.test("parseTaskToml() reads every documented key", () => {
  const spec = parseTaskToml(`
[task]
name = "render"
entrypoint = "./bin/../bin/run.sh"
workdir = "work"
args = ["--fast"]
[task.matrix]
scene = ["forest", "city"]
frame = { from = 1, to = 3 }
[env]
GREETING = "hi"
[resources]
cpus = 2
memory = "512MiB"
gpus = 0
[placement]
labels = { zone = "a" }
[limits]
timeout = "1m30s"
retries = 2
priority = 70
`);
  assert.equal(spec.name, "render");
  assert.equal(spec.entrypoint, "bin/run.sh");
  assert.equal(spec.workdir, "work");
  assert.equal(spec.instances, 6);
  assert.deepEqual(spec.env, { GREETING: "hi" });
  assert.equal(spec.memoryBytes, 512 * 2 ** 20);
  assert.deepEqual(spec.labels, { zone: "a" });
  assert.equal(spec.timeoutMs, 90_000);
  assert.equal(spec.retries, 2);
  assert.equal(spec.priority, 70);
  assert.deepEqual(matrixParams(spec, 0), { scene: "forest", frame: 1 });
  assert.deepEqual(matrixParams(spec, 5), { scene: "city", frame: 3 });
});

Deno.test("parseTaskToml() names an unknown key and its line", () => {
  rejects(`[task]\nentrypoint = "run.sh"\ninstancs = 4\n`, /line 3: unknown key 'task.instancs'/);
  rejects(`[task]\nentrypoint = "run.sh"\n[resorces]\ncpus = 1\n`, /line 3: unknown key 'resorces'/);
});

Deno.test("parseTaskToml() names a wrong type with the key, value and line", () => {
  rejects(`[task]\nentrypoint = "run.sh"\ninstances = "eight"\n`, /line 3: key 'task.instances' = "eight"/);
  rejects(`[task]\nentrypoint = "run.sh"\ninstances = 0\n`, /key 'task.instances' = 0/);
  rejects(
    `[task]\nentrypoint = "run.sh"\n[limits]\ntimeout = "soon"\n`,
    /line 4: key 'limits.timeout' = "soon".*not a duration/,
  );
});

Deno.test("parseTaskToml() rejects a missing entrypoint and paths leaving the root", () => {
  rejects(`[task]\nname = "x"\n`, /line 1: missing key 'task.entrypoint' .* or 'task.command'/);
  rejects(`[task]\nentrypoint = "../run.sh"\n`, /line 2: key 'task.entrypoint' = "..\/run.sh" leaves the task root/);
  rejects(`[task]\nentrypoint = "/bin/sh"\n`, /leaves the task root/);
  rejects(`[task]\nentrypoint = "run.sh"\nworkdir = "a/../../b"\n`, /line 3: key 'task.workdir'.*leaves the task root/);
});

Deno.test("parseTaskToml() reports TOML syntax errors with their line", () => {
  rejects(`[task]\nentrypoint = "run.sh\n`, /line 2: is not valid TOML/);
});

Deno.test("parseTaskToml() refuses instances together with a matrix, and reserved env names", () => {
  rejects(`[task]\nentrypoint = "r"\ninstances = 2\n[task.matrix]\na = [1]\n`, /exclude each other/);
  rejects(`[task]\nentrypoint = "r"\n[env]\nPARALLELIC_INSTANCE = "1"\n`, /line 4: key 'env.PARALLELIC_INSTANCE'/);
});

Deno.test("size, duration and path helpers", () => {
  assert.equal(parseBytes("1KiB"), 1024);
  assert.equal(parseBytes("2GB"), 2e9);
  assert.throws(() => parseBytes("lots"), /not a size/);
  assert.equal(parseDurationMs("1h30m"), 5_400_000);
  assert.equal(parseDurationMs("250ms"), 250);
  assert.equal(parseDurationMs(2), 2000);
  assert.throws(() => parseDurationMs("10 minutes"), /not a duration/);
  assert.equal(normalizeRelative("a/./b/../c"), "a/c");
  assert.equal(normalizeRelative("a/../.."), null);
  assert.equal(normalizeRelative("."), ".");
  assert.equal(lineOf("[task]\nx = 1\n[env]\nA = 'b'\n", ["env", "A"]), 4);
});

Deno.test("parseTaskToml() reads [data], [outputs] and [finalize]", () => {
  const hex = "ab12cd34".repeat(8);
  const spec = parseTaskToml(`[task]
entrypoint = "run.sh"
[data]
textures = "textures"
model = "model@sha256:${hex}"
short = "weights@sha256:ab12cd34"
[outputs]
paths = ["out/**", "./logs/*.txt"]
[finalize]
entrypoint = "bin/merge.sh"
args = ["--all"]
`);
  assert.deepEqual(spec.data, {
    textures: { name: "textures", version: null },
    model: { name: "model", version: `sha256:${hex}` },
    short: { name: "weights", version: "sha256:ab12cd34" },
  });
  assert.deepEqual(spec.outputs, ["out/**", "logs/*.txt"]);
  assert.deepEqual(spec.finalize, { entrypoint: "bin/merge.sh", command: null, args: ["--all"] });
  const none = parseTaskToml(`[task]\nentrypoint = "run.sh"\n`);
  assert.deepEqual([none.data, none.outputs, none.finalize], [{}, [], null]);
});

Deno.test("parseTaskToml() refuses bad [data], [outputs] and [finalize] entries with their line", () => {
  rejects(
    `[task]\nentrypoint = "r.sh"\n[data]\nmodel = "model@v1"\n`,
    /line 4: key 'data.model' = "model@v1": a data set is/,
  );
  rejects(`[task]\nentrypoint = "r.sh"\n[data]\n"bad-key" = "model"\n`, /line 4: key 'data.bad-key'/);
  rejects(
    `[task]\nentrypoint = "r.sh"\n[data]\nmodel = "a"\nMODEL = "b"\n`,
    /line 5: .*both name PARALLELIC_DATA_MODEL/,
  );
  rejects(
    `[task]\nentrypoint = "r.sh"\n[outputs]\npaths = ["../up/*"]\n`,
    /line 4: key 'outputs.paths' = "..\/up\/\*" \(item 1\) leaves the workdir/,
  );
  rejects(`[task]\nentrypoint = "r.sh"\n[outputs]\npaths = ["x"]\nglob = "x"\n`, /line 5: unknown key .outputs.glob./);
  rejects(
    `[task]\nentrypoint = "r.sh"\n[finalize]\nentrypoint = "/bin/sh"\n`,
    /line 4: key 'finalize.entrypoint' = "\/bin\/sh" leaves the task root/,
  );
});

Deno.test("parseTaskToml() refuses more than 64 data sets, naming the table and its line", () => {
  const sets = Array.from({ length: 65 }, (_, i) => `k${i} = "d"`).join("\n");
  rejects(`[task]\nentrypoint = "run.sh"\n[data]\n${sets}\n`, /line 3: key 'data' .*at most 64 data sets/);
  const ok = Array.from({ length: 64 }, (_, i) => `k${i} = "d"`).join("\n");
  assert.equal(Object.keys(parseTaskToml(`[task]\nentrypoint = "run.sh"\n[data]\n${ok}\n`).data).length, 64);
});

Deno.test("runSpecProblem() refuses what would run outside the task root, as nodes check every spec they get", () => {
  const run = parseTaskToml(`[task]\nentrypoint = "bin/run.sh"\nworkdir = "work"\n[env]\nA = "1"\n`);
  assert.equal(runSpecProblem(run), null);
  const bad: Array<[Partial<typeof run>, RegExp]> = [
    [{ entrypoint: "../../../../../../bin/sh" }, /entrypoint '..\/..\/..\/..\/..\/..\/bin\/sh' leaves the task root/],
    [{ entrypoint: "/bin/sh" }, /entrypoint '\/bin\/sh' leaves the task root/],
    [{ entrypoint: "." }, /entrypoint '.' leaves/],
    [{ entrypoint: "a/../../b" }, /leaves the task root/],
    [{ workdir: "../x" }, /workdir '..\/x' leaves/],
    [{ finalize: { entrypoint: "../f", command: null, args: [] } }, /finalize entrypoint '..\/f' leaves/],
    [{ command: "echo" }, /task needs exactly one of entrypoint and command/],
    [{ entrypoint: null }, /task needs exactly one/],
    [{ finalize: { entrypoint: null, command: null, args: [] } }, /finalize needs exactly one/],
    [{ outputs: ["../*"] }, /output path/],
    [{ inputs: { path: "../../etc/passwd", format: "lines" } }, /inputs '..\/..\/etc\/passwd' leaves/],
    [{ env: { "A=B": "x" } }, /env key 'A=B'/],
    [{ env: { PARALLELIC_TASK_ROOT: "/" } }, /env key 'PARALLELIC_TASK_ROOT'/],
    [{ data: { "a-b": { name: "d", version: null } } }, /data key 'a-b'/],
  ];
  for (const [change, why] of bad) {
    assert.match(runSpecProblem({ ...run, ...change }) ?? "", why, JSON.stringify(change));
  }
  const command = parseTaskToml(`[task]\ncommand = "echo hi"\n[finalize]\ncommand = "cat */x"\n`);
  assert.equal(runSpecProblem(command), null);
});

Deno.test("parseTaskToml() reads a command instead of an entrypoint, in [task] and [finalize]", () => {
  const spec = parseTaskToml(`[task]\ncommand = "echo hi $PARALLELIC_INSTANCE"\n[finalize]\ncommand = "cat */x"\n`);
  assert.equal(spec.entrypoint, null);
  assert.equal(spec.command, "echo hi $PARALLELIC_INSTANCE");
  assert.deepEqual(spec.finalize, { entrypoint: null, command: "cat */x", args: [] });
  assert.equal(parseTaskToml(`[task]\nentrypoint = "run.sh"\n`).command, null);
});

Deno.test("parseTaskToml() wants exactly one of entrypoint and command, and args only with an entrypoint", () => {
  rejects(
    `[task]\nentrypoint = "run.sh"\ncommand = "echo"\n`,
    /line 3: keys 'task.entrypoint' and 'task.command' exclude/,
  );
  rejects(`[task]\ncommand = "echo"\nargs = ["x"]\n`, /line 3: key 'task.args' goes with 'task.entrypoint' only/);
  rejects(`[task]\ncommand = ""\n`, /line 2: key 'task.command' = ""/);
  rejects(`[task]\ncommand = "a"\n[finalize]\nargs = ["x"]\n`, /line 3: missing key 'finalize.entrypoint'/);
  rejects(`[task]\ncommand = "a"\n[finalize]\ncommand = "b"\nentrypoint = "m.sh"\n`, /keys 'finalize.entrypoint' and/);
});

Deno.test("parseTaskToml() reads [limits] max_running, a positive whole number", () => {
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\n[limits]\nmax_running = 10\n`).maxRunning, 10);
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\n`).maxRunning, null);
  rejects(`[task]\ncommand = "x"\n[limits]\nmax_running = 0\n`, /line 4: key 'limits.max_running' = 0/);
});

Deno.test("parseTaskToml() refuses matrix keys that name the same variable once upper-cased", () => {
  rejects(
    `[task]\ncommand = "x"\n[task.matrix]\nfile = ["a"]\nFile = ["b"]\n`,
    /line 5: keys 'task.matrix.file' and 'task.matrix.File' both name PARALLELIC_PARAM_FILE/,
  );
});

Deno.test("parseTaskToml() reads [task] chunk; with it, no [outputs] paths and no colliding _LAST names", () => {
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\n`).chunk, 1);
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\nchunk = 10\n`).chunk, 10);
  rejects(`[task]\ncommand = "x"\nchunk = 0\n`, /line 3: key 'task.chunk' = 0/);
  rejects(
    `[task]\ncommand = "x"\nchunk = 4\n[outputs]\npaths = ["*.png"]\n`,
    /line 5: key 'outputs.paths' cannot go with 'task.chunk'/,
  );
  rejects(
    `[task]\ncommand = "x"\nchunk = 4\n[task.matrix]\nframe = [1]\nframe_last = [2]\n`,
    /line 6: keys 'task.matrix.frame' and 'task.matrix.frame_last' both name PARALLELIC_PARAM_FRAME_LAST/,
  );
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\n[task.matrix]\nframe = [1]\nframe_last = [2]\n`).instances, 1);
});

Deno.test("parseTaskToml() reads [after]: task ids, once each, and when", () => {
  const id = "t0mx5uwu7u5vpltj0";
  const spec = parseTaskToml(`[task]\ncommand = "x"\n[after]\ntasks = ["${id}", "${id}"]\n`);
  assert.deepEqual(spec.after, { tasks: [id], when: "succeeded" });
  assert.equal(
    parseTaskToml(`[task]\ncommand = "x"\n[after]\ntasks = ["${id}"]\nwhen = "ended"\n`).after?.when,
    "ended",
  );
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\n`).after, null);
  rejects(`[task]\ncommand = "x"\n[after]\ntasks = ["render"]\n`, /line 4: key 'after.tasks.0' = "render": a task id/);
  rejects(`[task]\ncommand = "x"\n[after]\ntasks = ["${id}"]\nwhen = "failed"\n`, /line 5: key 'after.when'/);
});

Deno.test("parseTaskToml() reads [notify]: on defaults to failed and succeeded; bad keys and URLs name the line", () => {
  const base = `[task]\ncommand = "true"\n[notify]\n`;
  assert.equal(parseTaskToml(`[task]\ncommand = "true"\n`).notify, null);
  assert.deepEqual(parseTaskToml(`${base}url = "https://hooks.example/p"\n`).notify, {
    url: "https://hooks.example/p",
    on: ["failed", "succeeded"],
  });
  assert.deepEqual(
    parseTaskToml(`${base}url = "http://h.example"\non = ["cancelled", "cancelled", "failed"]\n`).notify?.on,
    ["cancelled", "failed"],
  );
  rejects(`${base}url = "https://h.example"\nsecret = "x"\n`, /line 5: unknown key 'notify.secret'/);
  rejects(`${base}url = "ftp://h.example"\n`, /line 4: key 'notify.url' = "ftp:\/\/h.example": .*http:\/\//);
  rejects(`${base}url = "https://h.example"\non = []\n`, /key 'notify.on'/);
  rejects(`${base}on = ["failed"]\n`, /missing required key 'notify.url'/);
});
