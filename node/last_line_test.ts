import assert from "node:assert/strict";
import { MAX_STDERR_LINE_CHARS } from "../core/schema.ts";
import { lastLineKeeper } from "./last_line.ts";

const enc = (s: string) => new TextEncoder().encode(s);

Deno.test("the last non-empty line across chunks, without control characters", () => {
  const k = lastLineKeeper();
  assert.equal(k.line(), undefined);
  k.add(enc("first\nsecond par"));
  k.add(enc("t\x1b[31m red\n\n  \n"));
  assert.equal(k.line(), "second part[31m red");
});

Deno.test("a long last line is clipped; a huge stream keeps only its tail", () => {
  const k = lastLineKeeper();
  for (let i = 0; i < 1000; i++) k.add(enc(`line ${i}\n`));
  assert.equal(k.line(), "line 999");
  k.add(enc("x".repeat(10_000)));
  const line = k.line()!;
  assert.equal(line.length, MAX_STDERR_LINE_CHARS);
  assert.equal(line.endsWith("…"), true);
});
