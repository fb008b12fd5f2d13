/**
 * End to end: every flag a client subcommand's `--help` shows does something. The walk reads each subcommand's help;
 * a flag with no case here fails it, and each case runs the CLI against a manager and checks the flag's effect.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { CLIENT_COMMAND_FLAGS } from "../cli/help.ts";
import { runCli, startTestManager, tempDir } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

type Run = { code: number; stdout: string; stderr: string };

/** Flags every client subcommand takes, each with its own case below (they go through one path in main.ts). */
const COMMON = ["log-level", "log-format", "help", "manager", "token", "ca-file"];

Deno.test({
  name: "every flag a client subcommand's --help shows has an effect; one given to a verb it does not fit is refused",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const cli = (...args: string[]) => runCli(tm, ...args);
    const path = (name: string) => join(dir.path, name);
    const ok = path("ok");
    await Deno.mkdir(ok);
    await Deno.writeTextFile(
      join(ok, "task.toml"),
      `[task]\nentrypoint = "run.sh"\ninstances = 2\n[finalize]\ncommand = "echo fin; echo f > $PARALLELIC_OUTPUT/f"\n`,
    );
    await Deno.writeTextFile(
      join(ok, "run.sh"),
      `#!/bin/sh\necho "hello $PARALLELIC_INSTANCE"\necho x > "$PARALLELIC_OUTPUT/i$PARALLELIC_INSTANCE"\n` +
        `[ -z "$FAIL" ] || [ "$PARALLELIC_INSTANCE" != 1 ] || exit 3\n[ -z "$SLOW" ] || sleep 300\n`,
    );
    await Deno.chmod(join(ok, "run.sh"), 0o755);
    const idOf = (r: Run) => r.stdout.trim().split("\n")[0];
    const done = await cli("submit", ok, "--wait");
    assert.equal(done.code, 0, done.stderr);
    const id = idOf(done);
    const failing = idOf(await cli("submit", ok, "--wait", "--set", 'env.FAIL="1"'));
    await Deno.writeTextFile(path("data.txt"), "data");
    const lines = (r: Run) => r.stdout.trim().split("\n");
    const json = (r: Run) => JSON.parse(r.stdout);

    /** One case per flag: what it runs and what shows the flag was read. */
    const CASES: Record<string, () => Promise<void>> = {
      "submit --wait": async () => {
        const r = await cli("submit", ok, "--wait");
        assert.match(r.stderr, /Task t\w+ succeeded: 2 succeeded/);
      },
      "submit --json": async () => assert.equal(json(await cli("submit", ok, "--json", "--no-wait")).instances, 2),
      "submit --set": async () =>
        assert.match((await cli("submit", ok, "--no-wait", "--set", "task.instances=3")).stderr, /\(3 instances\)/),
      "submit --strict": async () => {
        const r = await cli("submit", ok, "--no-wait", "--strict", "--set", "resources.cpus=64");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /slots >= 64/);
      },
      "submit --after": async () => {
        const r = await cli("submit", ok, "--no-wait", "--after", id);
        assert.deepEqual(
          json(await cli("status", idOf(r), "--json")).upstream.map((u: { taskId: string }) => u.taskId),
          [id],
        );
      },
      "status --json": async () => assert.ok(Array.isArray(json(await cli("status", "--json")))),
      "status --limit": async () => assert.equal(lines(await cli("status", "--limit", "1")).length, 2),
      "wait --timeout": async () => {
        const slow = idOf(await cli("submit", ok, "--no-wait", "--set", 'env.SLOW="1"', "--set", "task.instances=1"));
        const r = await cli("wait", slow, "--timeout", "1s");
        assert.equal(r.code, 3);
        assert.match(r.stdout, /still (queued|running) after 1s/);
        assert.equal((await cli("cancel", slow)).code, 0);
      },
      "wait --json": async () => assert.equal(json(await cli("wait", id, "--json")).state, "succeeded"),
      "logs --instance": async () => assert.equal((await cli("logs", id, "--instance", "1")).stdout, "hello 1\n"),
      "logs --finalize": async () => assert.equal((await cli("logs", id, "--finalize")).stdout, "fin\n"),
      "logs --follow": async () => assert.equal((await cli("logs", id, "--follow")).stdout, "hello 0\n"),
      "results --o": async () => {
        assert.equal((await cli("results", id, "-o", path("r1"))).code, 0);
        await Deno.stat(join(path("r1"), "1", "i1"));
      },
      "results --output": async () => {
        assert.equal((await cli("results", id, "--output", path("r2"))).code, 0);
        await Deno.stat(join(path("r2"), "finalize", "f"));
      },
      "results --instance": async () => {
        assert.equal((await cli("results", id, "--instance", "1", "-o", path("r3"))).code, 0);
        assert.deepEqual((await Array.fromAsync(Deno.readDir(path("r3")))).map((e) => e.name), ["i1"]);
      },
      "results --finalize": async () => {
        assert.equal((await cli("results", id, "--finalize", "-o", path("r4"))).code, 0);
        assert.deepEqual((await Array.fromAsync(Deno.readDir(path("r4")))).map((e) => e.name), ["f"]);
      },
      "rerun --failed": async () =>
        assert.match((await cli("rerun", failing, "--failed")).stdout, /: 1 instance run again/),
      "rerun --instances": async () => {
        await cli("wait", failing);
        assert.match((await cli("rerun", failing, "--instances", "0-1")).stdout, /: 2 instances run again/);
      },
      "rerun --finalize": async () => {
        await cli("wait", id);
        assert.match((await cli("rerun", id, "--finalize")).stdout, /running: finalize runs again$/m);
      },
      "explain --instance": async () =>
        assert.match((await cli("explain", id, "--instance", "1")).stdout, /Instance 1 ended succeeded/),
      "data --json": async () => {
        assert.equal((await cli("data", "put", "ds", path("data.txt"))).code, 0);
        assert.ok(json(await cli("data", "ls", "--json")).some((d: { name: string }) => d.name === "ds"));
        assert.match((await cli("data", "rm", "ds", "--json")).stderr, /'--json' does not apply to .*data ls'/);
      },
      "data --shared": async () => {
        assert.equal((await cli("data", "put", "shared-ds", path("data.txt"), "--shared")).code, 0);
        const sets = json(await cli("data", "ls", "--json")) as { name: string; shared: boolean }[];
        assert.equal(sets.find((d) => d.name === "shared-ds")?.shared, true);
        assert.match((await cli("data", "ls", "--shared")).stderr, /'--shared' does not apply/);
      },
      "nodes --json": async () => {
        assert.ok(json(await cli("nodes", "--json")).length >= 1);
        const r = await cli("nodes", "drain", "nobody", "--json");
        assert.equal(r.code, 1);
        assert.match(r.stderr, /'--json' does not apply to 'parallelic nodes drain'/);
      },
      "nodes --rotate": async () => {
        const before = (await cli("nodes", "token")).stdout.trim();
        const after = (await cli("nodes", "token", "--rotate")).stdout.trim();
        assert.ok(before.length > 10 && after.length > 10);
        assert.notEqual(after, before);
        assert.match((await cli("nodes", "--rotate")).stderr, /'--rotate' does not apply/);
      },
      "users --role": async () => {
        assert.equal((await cli("users", "add", "flagger", "--role", "viewer")).code, 0);
        const users = json(await cli("users", "--json")) as { name: string; role: string }[];
        assert.equal(users.find((u) => u.name === "flagger")?.role, "viewer");
        assert.match((await cli("users", "rm", "flagger", "--role", "admin")).stderr, /'--role' does not apply/);
      },
      "users --json": async () => assert.ok(Array.isArray(json(await cli("users", "ls", "--json")))),
      "audit --limit": async () => assert.equal(json(await cli("audit", "--limit", "2", "--json")).length, 2),
      "audit --json": async () => assert.ok(Array.isArray(json(await cli("audit", "--json")))),
      "doctor --nats": async () =>
        assert.match((await cli("doctor", "--nats", "nats://127.0.0.1:1")).stdout, /127\.0\.0\.1:1/),
      "doctor --data-dir": async () =>
        assert.match((await cli("doctor", "--data-dir", path("dd"))).stdout, /dd\/state\.kv/),
      "doctor --work-dir": async () => assert.match((await cli("doctor", "--work-dir", path("wd"))).stdout, /wd/),
      "doctor --nats-user": async () =>
        assert.match((await cli("doctor", "--nats-user", "u")).stderr, /--nats-user u needs a password/),
      "doctor --nats-password-file": async () =>
        assert.match(
          (await cli("doctor", "--nats-user", "u", "--nats-password-file", path("none"))).stderr,
          /Cannot read the NATS password from '.*none'/,
        ),
      "doctor --nats-seed-file": async () =>
        assert.match((await cli("doctor", "--nats-seed-file", path("none"))).stderr, /Cannot read the NATS seed/),
      "doctor --nats-ca": async () => {
        const r = await cli("doctor", "--nats", tm.manager.natsUrl, "--nats-ca", path("none"));
        assert.match(r.stdout, /FAIL NATS reachable/);
      },
      "doctor --nats-cert": async () =>
        assert.match((await cli("doctor", "--nats-cert", path("c"))).stderr, /--nats-cert and --nats-key go together/),
      "doctor --nats-key": async () =>
        assert.match((await cli("doctor", "--nats-key", path("k"))).stderr, /--nats-cert and --nats-key go together/),
      // The flags every client subcommand takes.
      "* --log-level": async () =>
        assert.match((await cli("status", id, "--log-level", "debug")).stderr, /DEBUG cli:request method=GET url=http/),
      "* --log-format": async () => {
        const r = await cli("status", id, "--log-level", "debug", "--log-format", "json");
        assert.equal(JSON.parse(r.stderr.trim().split("\n")[0]).event, "cli:request");
      },
      "* --help": async () => assert.match((await cli("wait", "--help")).stdout, /Flags: .*--timeout/),
      "* --manager": async () =>
        assert.match((await cli("status", "--manager", "http://127.0.0.1:1")).stderr, /Cannot reach the manager at/),
      "* --token": async () => assert.match((await cli("status", "--token", "wrong")).stderr, /parallelic login/),
      "* --ca-file": async () =>
        assert.match((await cli("status", "--ca-file", path("none.pem"))).stderr, /none\.pem|No such file/),
    };

    // The walk: each subcommand's help names its flags; each one needs a case.
    const missing: string[] = [];
    for (const command of Object.keys(CLIENT_COMMAND_FLAGS)) {
      const help = await cli(command, "--help");
      assert.equal(help.code, 0, `${command} --help`);
      const flags = (/^Flags: (.*)$/m.exec(help.stdout)?.[1] ?? "").split(" ").map((f) => f.replace(/^--/, ""));
      assert.ok(flags.length > 0, `${command} --help names its flags`);
      for (const flag of flags) {
        const key = COMMON.includes(flag) ? `* --${flag}` : `${command} --${flag}`;
        if (!CASES[key]) missing.push(key);
      }
    }
    assert.deepEqual(missing, [], "flags shown by --help without a case here");
    const check = async (name: string) => {
      try {
        await CASES[name]();
      } catch (e) {
        throw new Error(`${name}: ${(e as Error).message}`, { cause: e });
      }
    };
    // Four at a time, but the reruns last, one by one: they change the tasks the others read.
    const names = Object.keys(CASES);
    const reading = names.filter((n) => !n.startsWith("rerun "));
    let next = 0;
    await Promise.all([0, 1, 2, 3].map(async () => {
      while (next < reading.length) await check(reading[next++]);
    }));
    for (const name of names.filter((n) => n.startsWith("rerun "))) await check(name);
  },
});
