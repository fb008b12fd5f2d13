import assert from "node:assert/strict";
import { join } from "node:path";
import { tempDir } from "../tests/kit/mod.ts";
import { MANAGER_SETTINGS, NODE_SETTINGS, resolveConfig, showConfig } from "./config.ts";

Deno.test("resolveConfig(): flags win over the environment, which wins over the file", async () => {
  await using dir = await tempDir();
  const file = join(dir.path, "parallelic.toml");
  await Deno.writeTextFile(
    file,
    `[manager]\nport = 9000\nhost = "0.0.0.0"\nslots = 3\ngrace = "10s"\n[node]\nlabel = ["zone=a"]\n`,
  );
  const env = (name: string) => ({ PARALLELIC_PORT: "9100", PARALLELIC_SLOTS: "5" } as Record<string, string>)[name];
  const r = await resolveConfig(["--config", file, "--slots=7"], "manager", MANAGER_SETTINGS, env);
  assert.equal(r.values.port, 9100);
  assert.equal(r.sources.port, "env");
  assert.equal(r.values.slots, 7);
  assert.equal(r.sources.slots, "flag");
  assert.equal(r.values.host, "0.0.0.0");
  assert.equal(r.sources.host, "file");
  assert.equal(r.values.grace, 10_000);
  assert.equal(r.sources["lease-ms"], "default");
  const node = await resolveConfig([], "node", NODE_SETTINGS, (n) => n === "PARALLELIC_CONFIG" ? file : undefined);
  assert.deepEqual(node.values.label, ["zone=a"]);
  const text = showConfig(r, MANAGER_SETTINGS);
  assert.match(text, /port\s+9100\s+env/);
  assert.match(text, /lease-ms\s+\(default\)\s+default/);
  const masked = showConfig(
    { values: { token: "s3cret" }, sources: { token: "flag" }, rest: [] },
    { token: { type: "string", help: "a secret", secret: true } },
  );
  assert.doesNotMatch(masked, /s3cret/);
  assert.match(masked, /token\s+\*{8}\s+flag/);
});

Deno.test("resolveConfig() names unknown keys and flags and bad values, with where they came from", async () => {
  await using dir = await tempDir();
  const file = join(dir.path, "bad.toml");
  await Deno.writeTextFile(file, `[manager]\nprot = 9000\n`);
  await assert.rejects(
    resolveConfig(["--config", file], "manager", MANAGER_SETTINGS, () => undefined),
    /unknown key 'manager.prot'/,
  );
  await Deno.writeTextFile(file, `[managr]\nport = 1\n`);
  await assert.rejects(
    resolveConfig(["--config", file], "manager", MANAGER_SETTINGS, () => undefined),
    /unknown section 'managr'/,
  );
  await assert.rejects(
    resolveConfig(["--prot=1"], "manager", MANAGER_SETTINGS, () => undefined),
    /Unknown flag '--prot'/,
  );
  await assert.rejects(
    resolveConfig([], "manager", MANAGER_SETTINGS, (n) => n === "PARALLELIC_PORT" ? "eighty" : undefined),
    /environment PARALLELIC_PORT: 'port' must be a whole number: got "eighty"/,
  );
  await assert.rejects(
    resolveConfig(["--config", join(dir.path, "missing.toml")], "manager", MANAGER_SETTINGS, () => undefined),
    /it does not exist/,
  );
});
