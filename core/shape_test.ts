/**
 * The size rules of the source, checked on every run:
 *
 * - No source file is longer than {@linkcode MAX_FILE_LINES} lines.
 * - No function is longer than {@linkcode MAX_FUNCTION_LINES} lines, counted
 *   from the line it starts on to the line it ends on, both included, with
 *   the functions it nests (which are checked on their own as well).
 *
 * Source files are `main.ts` and every `.ts` and `.js` file under the
 * layers and tools (see {@linkcode SOURCE_DIRS}), except tests (`*_test.ts`)
 * and the web UI's static assets (`gateway/ui/static/`, served as they are).
 * tests/ and bench/ are not source. A function is what TypeScript's parser
 * calls one: a declaration, an expression, an arrow, a method, an accessor
 * or a constructor.
 *
 * @module
 */
import assert from "node:assert/strict";
import { dirname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** Most lines in one source file. */
const MAX_FILE_LINES = 500;
/** Most lines in one function. */
const MAX_FUNCTION_LINES = 200;
/** Where source files live, besides `main.ts`. */
const SOURCE_DIRS = ["core", "actors", "services", "node", "gateway", "cli", "manager", "tools"];
/** Folders of assets served as they are, not source. */
const ASSET_DIRS = ["gateway/ui/static"];
const ROOT = normalize(join(dirname(fileURLToPath(import.meta.url)), ".."));

/** Every source file, relative to the repository. */
async function sourceFiles(): Promise<string[]> {
  const out = ["main.ts"];
  async function walk(dir: string): Promise<void> {
    if (ASSET_DIRS.includes(dir)) return;
    for await (const e of Deno.readDir(join(ROOT, dir))) {
      const path = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(path);
      else if (/\.(ts|js)$/.test(e.name) && !/_test\.ts$/.test(e.name)) out.push(path);
    }
  }
  for (const dir of SOURCE_DIRS) await walk(dir);
  return out.sort();
}

/** Lines of a text, a last line without a newline included. */
function lineCount(text: string): number {
  return text.length === 0 ? 0 : text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
}

/** Every function of a source text: its name (or where it is, when it has none) and its lines. */
function functionLengths(path: string, text: string): { name: string; line: number; lines: number }[] {
  const source = ts.createSourceFile(path, text, ts.ScriptTarget.Latest, true);
  const found: { name: string; line: number; lines: number }[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      found.push({ name: nameOf(node), line: first + 1, lines: last - first + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** A function's own name, or the name it is given (`const f = () => …`, `{ f: () => … }`), or `<anonymous>`. */
function nameOf(node: ts.Node): string {
  const own = (node as { name?: ts.Node }).name;
  if (own && ts.isIdentifier(own)) return own.text;
  const parent = node.parent;
  if (parent && (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent)) && ts.isIdentifier(parent.name)) {
    return parent.name.text;
  }
  return "<anonymous>";
}

Deno.test("functionLengths() measures declarations, arrows, methods and accessors, nested ones too", () => {
  const text = [
    "export function outer() {", // 1
    "  const inner = () => {", // 2
    "    return 1;", // 3
    "  };", // 4
    "  return inner;", // 5
    "}", // 6
    "class C {", // 7
    "  m() { return `}`; }", // 8
    "  get g() {", // 9
    "    return /}/.test('{');", // 10
    "  }", // 11
    "}", // 12
    "const o = { p: function () {} };", // 13
    "declare function d(): void;", // 14
  ].join("\n");
  assert.deepEqual(functionLengths("x.ts", text), [
    { name: "outer", line: 1, lines: 6 },
    { name: "inner", line: 2, lines: 3 },
    { name: "m", line: 8, lines: 1 },
    { name: "g", line: 9, lines: 3 },
    { name: "p", line: 13, lines: 1 },
  ]);
});

Deno.test("lineCount() counts a last line with or without its newline", () => {
  assert.equal(lineCount(""), 0);
  assert.equal(lineCount("a"), 1);
  assert.equal(lineCount("a\n"), 1);
  assert.equal(lineCount("a\nb"), 2);
});

Deno.test(`no source file is over ${MAX_FILE_LINES} lines, no function over ${MAX_FUNCTION_LINES}`, async () => {
  const files = await sourceFiles();
  assert.ok(files.length > 50, `only ${files.length} source files found under ${ROOT}`);
  const tooLong: string[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(join(ROOT, file));
    const lines = lineCount(text);
    if (lines > MAX_FILE_LINES) tooLong.push(`${file}: ${lines} lines (split it by concern)`);
    for (const f of functionLengths(file, text)) {
      if (f.lines > MAX_FUNCTION_LINES) {
        tooLong.push(`${file}:${f.line}: function ${f.name} is ${f.lines} lines (extract named pieces)`);
      }
    }
  }
  assert.deepEqual(tooLong, [], `over the limits of ${MAX_FILE_LINES} lines a file, ${MAX_FUNCTION_LINES} a function`);
});
