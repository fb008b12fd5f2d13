import assert from "node:assert/strict";
import { ValidationError } from "./errors.ts";
import { checkDataPath, distinctBytes, manifestText, parseManifest, versionOf } from "./data_manifest.ts";

const A = "a".repeat(64);
const B = "b".repeat(64);

Deno.test("manifestText() is canonical: same files in any order give the same version", () => {
  const files = [
    { path: "z/last.bin", size: 5, mode: 0o644, sha256: A },
    { path: "b c.txt", size: 1, mode: 0o755, sha256: B },
    { path: "é.txt", size: 1, mode: 0o600, sha256: B },
  ];
  const text = manifestText(files);
  assert.equal(text, `${B} 1 755 b c.txt\n${A} 5 644 z/last.bin\n${B} 1 644 é.txt\n`);
  assert.equal(versionOf(manifestText([...files].reverse())), versionOf(text));
  assert.match(versionOf(text), /^sha256:[0-9a-f]{64}$/);
  assert.deepEqual(parseManifest(text, versionOf(text)).map((f) => f.path), ["b c.txt", "z/last.bin", "é.txt"]);
  assert.throws(() => parseManifest(text, versionOf("other")), /does not match/);
  assert.throws(() => parseManifest("nonsense\n"), ValidationError);
  assert.equal(distinctBytes([parseManifest(text), [{ path: "x", size: 5, mode: 0o644, sha256: A }]]), 6);
});

Deno.test("checkDataPath() normalizes and refuses paths that leave the root", () => {
  assert.equal(checkDataPath("./a//b/./c.txt"), "a/b/c.txt");
  assert.throws(() => checkDataPath("/etc/passwd"), /entry '\/etc\/passwd' is an absolute path/);
  assert.throws(() => checkDataPath("a/../../x"), /escapes its root/);
  assert.throws(() => checkDataPath("bad\nname"), /control character/);
  assert.throws(() => checkDataPath("./"), /no file name/);
});
