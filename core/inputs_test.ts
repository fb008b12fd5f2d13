import assert from "node:assert/strict";
import { ValidationError } from "./errors.ts";
import { inputEnv, inputParams, inputsFormat, MAX_INPUT_ROW_CHARS, parseInputs } from "./inputs.ts";
import { parseTaskToml } from "./task_toml.ts";

const lines = { path: "jobs.txt", format: "lines" as const };
const csv = { path: "runs.csv", format: "csv" as const };
const jsonl = { path: "runs.jsonl", format: "jsonl" as const };

function rejects(text: string, inputs: typeof lines | typeof csv | typeof jsonl, pattern: RegExp, maxRows = 100) {
  assert.throws(() => parseInputs(text, inputs, maxRows), (e) => {
    assert.ok(e instanceof ValidationError, String(e));
    assert.match(e.message, pattern);
    return true;
  });
}

Deno.test("inputsFormat() goes by the file's extension", () => {
  assert.equal(inputsFormat("a/runs.CSV"), "csv");
  assert.equal(inputsFormat("runs.jsonl"), "jsonl");
  assert.equal(inputsFormat("runs.ndjson"), "jsonl");
  assert.equal(inputsFormat("jobs.txt"), "lines");
  assert.equal(inputsFormat("jobs"), "lines");
});

Deno.test("a text file gives one instance per non-empty line, its text in PARALLELIC_INPUT", () => {
  const rows = parseInputs("a.exr\r\n\n  \nb c.exr\n", lines, 100);
  assert.deepEqual(rows, { format: "lines", rows: ["a.exr", "b c.exr"] });
  assert.deepEqual(inputEnv(rows, 1), { PARALLELIC_INPUT: "b c.exr" });
  assert.deepEqual(inputParams(rows, 0), { input: "a.exr" });
});

Deno.test("a CSV file gives PARALLELIC_PARAM_<COLUMN> per row, with quoted fields", () => {
  const rows = parseInputs(`seed,label\n1,"a, ""quoted""\nline"\n\n2,plain\r\n`, csv, 100);
  assert.deepEqual(rows.rows, [{ seed: "1", label: 'a, "quoted"\nline' }, { seed: "2", label: "plain" }]);
  assert.deepEqual(inputEnv(rows, 0), { PARALLELIC_PARAM_SEED: "1", PARALLELIC_PARAM_LABEL: 'a, "quoted"\nline' });
  assert.deepEqual(inputParams(rows, 1), { seed: "2", label: "plain" });
});

Deno.test("a JSON lines file gives PARALLELIC_PARAM_<KEY> per object", () => {
  const rows = parseInputs(`{"lr": 0.1, "name": "x", "fast": true}\n\n{"lr": 1}\n`, jsonl, 100);
  assert.equal(rows.rows.length, 2);
  assert.deepEqual(inputEnv(rows, 0), {
    PARALLELIC_PARAM_LR: "0.1",
    PARALLELIC_PARAM_NAME: "x",
    PARALLELIC_PARAM_FAST: "true",
  });
});

Deno.test("bad inputs are refused naming the file and the line", () => {
  rejects("\n \n", lines, /inputs 'jobs.txt': has no rows/);
  rejects("a\nb\nc\n", lines, /inputs 'jobs.txt': has more than 2 rows/, 2);
  rejects(`a\n${"x".repeat(MAX_INPUT_ROW_CHARS + 1)}\n`, lines, /inputs 'jobs.txt' line 2: is 65537 characters long/);
  rejects("seed,label\n1,a\n2\n", csv, /inputs 'runs.csv' line 3: has 1 fields, the header has 2/);
  rejects("seed,bad-name\n1,a\n", csv, /inputs 'runs.csv' line 1: header 'bad-name' is not a variable name/);
  rejects("file,File\n1,a\n", csv, /line 1: headers 'file' and 'File' both name PARALLELIC_PARAM_FILE/);
  rejects(`seed\n"open\n`, csv, /inputs 'runs.csv' line 2: has a quoted field that is never closed/);
  rejects(`seed\n"a"b\n`, csv, /line 2: has text after a closing quote/);
  rejects("seed\n", csv, /has no rows/);
  rejects(`{"a": 1}\n{"a": [1]}\n`, jsonl, /inputs 'runs.jsonl' line 2: key 'a' holds \[1\]/);
  rejects(`{"a": 1}\n\n[1]\n`, jsonl, /inputs 'runs.jsonl' line 3: is not a JSON object/);
  rejects(`{"a": 1\n`, jsonl, /inputs 'runs.jsonl' line 1: is not JSON/);
  rejects(`{"a": 1, "A": 2}\n`, jsonl, /line 1: 'a' and 'A' both name PARALLELIC_PARAM_A/);
  rejects(`{"a-b": 1}\n`, jsonl, /line 1: key 'a-b' is not a variable name/);
});

Deno.test("parseTaskToml() reads [task] inputs, exclusive with instances and a matrix", () => {
  const spec = parseTaskToml(`[task]\ncommand = "x"\ninputs = "./lists/runs.csv"\n`);
  assert.deepEqual(spec.inputs, { path: "lists/runs.csv", format: "csv" });
  assert.equal(parseTaskToml(`[task]\ncommand = "x"\n`).inputs, null);
  for (const [toml, line] of [[`instances = 2`, 3], [`[task.matrix]\na = [1]`, 3]] as const) {
    assert.throws(
      () => parseTaskToml(`[task]\ncommand = "x"\ninputs = "jobs.txt"\n${toml}\n`),
      new RegExp(`line ${line}: keys 'task.inputs' and 'task.(instances|matrix)' exclude each other`),
    );
  }
  assert.throws(() => parseTaskToml(`[task]\ncommand = "x"\ninputs = "../jobs.txt"\n`), /leaves the task root/);
});
