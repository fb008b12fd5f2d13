import assert from "node:assert/strict";
import { dirname, join, normalize, relative } from "node:path";
import { fileURLToPath } from "node:url";

/**
 * The layers and what each may import: core <- actors/services/node <-
 * gateway <- manager <- main.ts. The CLI is a client of the HTTP API, so it
 * speaks only core's schemas, never the server's code.
 */
const ALLOWED: Record<string, readonly string[]> = {
  core: ["core"],
  actors: ["core", "actors"],
  services: ["core", "services"],
  node: ["core", "node"],
  gateway: ["core", "actors", "services", "gateway"],
  cli: ["core", "cli"],
  manager: ["core", "actors", "services", "node", "gateway", "manager"],
  "main.ts": ["core", "actors", "services", "node", "gateway", "cli", "manager"],
};
const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), ".."));

/** The layer of a path relative to the repository, or undefined outside the layers (tests, bench, tools). */
function layerOf(path: string): string | undefined {
  const top = path.split("/")[0];
  return top in ALLOWED ? top : undefined;
}

/** Every source file of the layers, tests aside, relative to the repository. */
async function sourceFiles(): Promise<string[]> {
  const out = ["main.ts"];
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (/\.(ts|js)$/.test(e.name) && !/_test\.ts$/.test(e.name)) out.push(path);
    }
  }
  for (const dir of Object.keys(ALLOWED)) if (dir !== "main.ts") await walk(dir);
  return out.sort();
}

/** The relative module specifiers a source text imports or re-exports, statically or dynamically. */
function relativeImports(source: string): string[] {
  const found: string[] = [];
  const patterns = [/\bfrom\s*["'](\.{1,2}\/[^"']+)["']/g, /\bimport\s*\(?\s*["'](\.{1,2}\/[^"']+)["']/g];
  for (const re of patterns) for (const m of source.matchAll(re)) found.push(m[1]);
  return found;
}

Deno.test("relativeImports() finds static, multi-line, type-only, side-effect, dynamic imports and re-exports", () => {
  const source = [
    'import { a } from "./a.ts";',
    "import {\n  b,\n  type C,\n} from '../gateway/b.ts';",
    'import type { D } from "../cli/d.ts";',
    'import "../manager/e.ts";',
    'const f = await import("../node/f.ts");',
    'export { g } from "./g.ts";',
    'import text from "../x.js" with { type: "text" };',
    'import { z } from "zod";',
  ].join("\n");
  assert.deepEqual(relativeImports(source).sort(), [
    "../cli/d.ts",
    "../gateway/b.ts",
    "../manager/e.ts",
    "../node/f.ts",
    "../x.js",
    "./a.ts",
    "./g.ts",
  ]);
});

Deno.test("no source file imports from a layer it may not (above its own, or the server from the CLI)", async () => {
  const upward: string[] = [];
  const files = await sourceFiles();
  assert.ok(files.length > 50, `only ${files.length} source files found under ${ROOT}`);
  for (const file of files) {
    const own = layerOf(file)!;
    for (const spec of relativeImports(await Deno.readTextFile(join(ROOT, file)))) {
      const target = relative(ROOT, normalize(join(ROOT, dirname(file), spec)));
      const layer = layerOf(target);
      if (layer !== undefined && !ALLOWED[own].includes(layer)) upward.push(`${file} imports "${spec}" (${target})`);
    }
  }
  assert.deepEqual(
    upward,
    [],
    `layers import downward only (see ALLOWED in core/layers_test.ts):\n${upward.join("\n")}`,
  );
});

Deno.test("benchmarks and tools import nothing from tests/ (their helpers are bench/ and tools/)", async () => {
  const found: string[] = [];
  for (const dir of ["bench", "tools"]) {
    for await (const e of Deno.readDir(join(ROOT, dir))) {
      if (!e.isFile || !/\.ts$/.test(e.name)) continue;
      const file = `${dir}/${e.name}`;
      for (const spec of relativeImports(await Deno.readTextFile(join(ROOT, file)))) {
        const target = relative(ROOT, normalize(join(ROOT, dir, spec)));
        if (target.startsWith("tests/")) found.push(`${file} imports "${spec}"`);
      }
    }
  }
  assert.deepEqual(found, []);
});
