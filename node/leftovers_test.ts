import assert from "node:assert/strict";
import { join } from "node:path";
import { testLogger } from "../tests/kit/mod.ts";
import { createProcessLedger, JOURNAL_IDLE_BYTES, JOURNAL_MAX_BYTES, killLeftovers, startTicks } from "./leftovers.ts";
import { loadLibc } from "./libc.ts";

const spawn = () => new Deno.Command("setsid", { args: ["sleep", "60"], stdout: "null", stderr: "null" }).spawn();

Deno.test("leftovers: a written-down group is killed; a pid whose start time differs is left alone", async () => {
  const dir = await Deno.makeTempDir();
  const ledgerDir = join(dir, "pids");
  const ours = spawn();
  const stranger = spawn();
  const legacy = spawn();
  try {
    await new Promise((r) => setTimeout(r, 100)); // setsid execs sleep meanwhile
    const ledger = createProcessLedger(ledgerDir);
    ledger.started(ours.pid);
    // As if the stranger's pid had been given to another process since it was written down.
    Deno.writeTextFileSync(join(ledgerDir, "journal"), `+${stranger.pid}-1\n`, { append: true });
    // The older form: a file per group.
    Deno.writeFileSync(join(ledgerDir, `${legacy.pid}-${startTicks(legacy.pid)}`), new Uint8Array());
    assert.equal(await killLeftovers(ledgerDir, join(dir, "runs"), testLogger()), 2);
    assert.equal((await ours.status).signal, "SIGKILL");
    assert.equal((await legacy.status).signal, "SIGKILL");
    assert.notEqual(startTicks(stranger.pid), null, "the stranger lives");
    assert.deepEqual([...Deno.readDirSync(ledgerDir)], [], "the ledger is empty again");
    const next = createProcessLedger(ledgerDir);
    next.started(stranger.pid);
    next.ended(stranger.pid);
    assert.equal(await killLeftovers(ledgerDir, join(dir, "runs"), testLogger()), 0, "an ended process is crossed out");
    assert.notEqual(startTicks(stranger.pid), null, "the stranger lives");
  } finally {
    for (const p of [stranger, ours, legacy]) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leftovers: the journal stays small while instances come and go, and keeps what runs", async () => {
  const dir = await Deno.makeTempDir();
  const ledgerDir = join(dir, "pids");
  const long = spawn();
  try {
    await new Promise((r) => setTimeout(r, 100));
    const ledger = createProcessLedger(ledgerDir);
    ledger.started(long.pid);
    // Short instances meanwhile (this process stands for each: it has a start time too).
    for (let i = 0; i < 4000; i++) {
      ledger.started(Deno.pid);
      ledger.ended(Deno.pid);
    }
    assert.ok(Deno.statSync(join(ledgerDir, "journal")).size <= JOURNAL_MAX_BYTES + 64);
    assert.equal(await killLeftovers(ledgerDir, join(dir, "runs"), testLogger()), 1, "the long one is still listed");
    assert.equal((await long.status).signal, "SIGKILL");
  } finally {
    try {
      long.kill("SIGKILL");
    } catch { /* gone */ }
    await long.status;
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leftovers: one instance at a time keeps the journal a few KiB long, listing nothing once it ended", async () => {
  const dir = await Deno.makeTempDir();
  const ledgerDir = join(dir, "pids");
  try {
    const ledger = createProcessLedger(ledgerDir);
    ledger.started(Deno.pid);
    ledger.ended(Deno.pid);
    assert.ok(Deno.statSync(join(ledgerDir, "journal")).size > 0, "not truncated after each instance");
    for (let i = 0; i < 4000; i++) {
      ledger.started(Deno.pid);
      ledger.ended(Deno.pid);
    }
    assert.ok(Deno.statSync(join(ledgerDir, "journal")).size <= JOURNAL_IDLE_BYTES + 64);
    assert.equal(await killLeftovers(ledgerDir, join(dir, "runs"), testLogger()), 0, "nothing is listed");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("leftovers: a group written down with the ticks around its spawn is killed; outside them, left alone", async () => {
  const libc = loadLibc();
  if (!libc) return console.log("skipped: no C library (the Deno.Command spawner reads /proc instead)");
  const dir = await Deno.makeTempDir();
  const ledgerDir = join(dir, "pids");
  const before = libc.bootTicks();
  const ours = spawn();
  const stranger = spawn();
  const after = libc.bootTicks();
  try {
    const ledger = createProcessLedger(ledgerDir);
    ledger.started(ours.pid, [before, after]);
    // As if the stranger's pid had been written down for a process that started before it.
    ledger.started(stranger.pid, [before - 200, before - 100]);
    assert.equal(await killLeftovers(ledgerDir, join(dir, "runs"), testLogger()), 1);
    assert.equal((await ours.status).signal, "SIGKILL");
    assert.notEqual(startTicks(stranger.pid), null, "the stranger lives");
  } finally {
    for (const p of [stranger, ours]) {
      try {
        p.kill("SIGKILL");
      } catch { /* gone */ }
      await p.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
});
