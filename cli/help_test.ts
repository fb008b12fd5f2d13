import assert from "node:assert/strict";
import { join } from "node:path";
import { CLIENT_COMMAND_FLAGS } from "./help.ts";

const MAIN = join(import.meta.dirname!, "..", "main.ts");

/** Runs `main.ts ARGS`; one still running after 20 s is killed (a server that started) and says so. */
async function main(args: string[], env: Record<string, string> = {}) {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", MAIN, ...args],
    env: { NO_COLOR: "1", ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed = false;
  const timer = setTimeout(() => {
    killed = true;
    try {
      child.kill("SIGKILL");
    } catch {
      // It ended just as the time ran out (a loaded machine): not killed after all.
      killed = false;
    }
  }, 20_000);
  const out = await child.output();
  clearTimeout(timer);
  const text = new TextDecoder();
  return { code: out.code, killed, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test("every subcommand answers --help with its usage and exit 0, starting nothing", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const commands = ["manager", "node", "config", ...Object.keys(CLIENT_COMMAND_FLAGS)];
    const env = { PARALLELIC_DATA_DIR: join(dir, "data"), PARALLELIC_PORT: "0", PARALLELIC_NATS_PORT: "0" };
    // A few at a time: twenty Deno processes starting at once on a loaded machine take longer than the 20 s.
    const runs: Awaited<ReturnType<typeof main>>[] = [];
    for (let i = 0; i < commands.length; i += 4) {
      const batch = commands.slice(i, i + 4);
      runs.push(...await Promise.all(batch.map((c) => main([c, "--help", `--work-dir=${join(dir, "w")}`], env))));
    }
    for (const [i, r] of runs.entries()) {
      assert.equal(r.killed, false, `${commands[i]} --help started something: ${r.stderr}`);
      assert.equal(r.code, 0, `${commands[i]} --help: ${r.stderr}`);
      assert.match(r.stdout, new RegExp(`^Usage:\\n  parallelic ${commands[i]}\\b`), commands[i]);
    }
    const manager = runs[0].stdout;
    assert.match(manager, /--data-dir\s+Deno KV/, "the manager's help lists its flags");
    assert.match(runs[1].stdout, /--work-dir\s+package cache/, "the node's help lists its flags");
    assert.deepEqual([...Deno.readDirSync(dir)], [], "no data dir or work dir was made");
    const short = await main(["node", "-h"]);
    assert.equal(short.code, 0);
    assert.match(short.stdout, /^Usage:\n {2}parallelic node --nats/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("an unknown flag is an error naming the subcommand and its flags", async () => {
  const status = await main(["status", "--rotate"]);
  assert.equal(status.code, 1);
  assert.match(status.stderr, /Unknown flag '--rotate' for 'parallelic status': known flags are .*--json/);
  assert.doesNotMatch(status.stderr, /--rotate,|--follow/, "only status's own flags are named");
  const node = await main(["node", "--port=1"]);
  assert.equal(node.code, 1);
  assert.match(node.stderr, /Unknown flag '--port' for 'parallelic node': known flags are .*--work-dir/);
});
