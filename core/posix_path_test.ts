import assert from "node:assert/strict";
import * as node from "node:path";
import fc from "fast-check";
import { basename, join, normalize, resolve } from "./posix_path.ts";

/** Paths made of the parts that make normalizing hard: empty parts, `.`, `..`, leading and trailing slashes. */
const path = fc.array(fc.constantFrom("", ".", "..", "a", "b.zip", "..x", ".git", " "), { maxLength: 7 })
  .chain((parts) => fc.constantFrom(parts.join("/"), `/${parts.join("/")}`, `${parts.join("/")}/`));

Deno.test("normalize, join, basename and resolve give what node:path gives", () => {
  fc.assert(fc.property(path, (p) => assert.equal(normalize(p), node.normalize(p), `normalize(${p})`)), {
    numRuns: 2000,
  });
  fc.assert(
    fc.property(
      path,
      path,
      path,
      (a, b, c) => assert.equal(join(a, b, c), node.join(a, b, c), `join(${a}, ${b}, ${c})`),
    ),
    { numRuns: 2000 },
  );
  fc.assert(fc.property(path, (p) => assert.equal(basename(p), node.basename(p), `basename(${p})`)), {
    numRuns: 2000,
  });
  fc.assert(fc.property(path, (p) => assert.equal(resolve(p), node.resolve(p), `resolve(${p})`)), { numRuns: 2000 });
});

Deno.test("the cases the CLI meets", () => {
  assert.equal(join("/home/u", ".config", "parallelic", "config.toml"), "/home/u/.config/parallelic/config.toml");
  assert.equal(join("data/", "admin-token"), "data/admin-token");
  assert.equal(join(".", "task.toml"), "task.toml");
  assert.equal(join(""), ".");
  assert.equal(basename("examples/hello/"), "hello");
  assert.equal(basename("/"), "");
  assert.equal(resolve("/tmp//ca.pem"), "/tmp/ca.pem");
  assert.equal(resolve("ca.pem"), `${Deno.cwd()}/ca.pem`);
});
