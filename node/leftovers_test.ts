import assert from "node:assert/strict";
import { join } from "node:path";
import { testLogger } from "../tests/kit/mod.ts";
import { createProcessLedger, killLeftovers, startTicks } from "./leftovers.ts";

Deno.test("leftovers: a written-down group is killed; a pid whose start time differs is left alone", async () => {
  const dir = await Deno.makeTempDir();
  const ledgerDir = join(dir, "pids");
  const spawn = () => new Deno.Command("setsid", { args: ["sleep", "60"], stdout: "null", stderr: "null" }).spawn();
  const ours = spawn();
  const stranger = spawn();
  try {
    await new Promise((r) => setTimeout(r, 100)); // setsid execs sleep meanwhile
    const ledger = createProcessLedger(ledgerDir);
    ledger.started(ours.pid);
    ledger.started(stranger.pid);
    // As if the stranger's pid had been given to another process since it was written down.
    const [name] = [...Deno.readDirSync(ledgerDir)].map((e) => e.name).filter((n) => n.startsWith(`${stranger.pid}-`));
    Deno.renameSync(join(ledgerDir, name), join(ledgerDir, `${stranger.pid}-1`));
    assert.equal(await killLeftovers(ledgerDir, join(dir, "runs"), testLogger()), 1);
    assert.equal((await ours.status).signal, "SIGKILL");
    assert.notEqual(startTicks(stranger.pid), null, "the stranger lives");
    assert.deepEqual([...Deno.readDirSync(ledgerDir)], [], "the ledger is empty again");
    ledger.started(stranger.pid);
    ledger.ended(stranger.pid);
    assert.deepEqual([...Deno.readDirSync(ledgerDir)], [], "an ended process is crossed out");
  } finally {
    try {
      stranger.kill("SIGKILL");
    } catch { /* gone */ }
    await stranger.status;
    await Deno.remove(dir, { recursive: true });
  }
});
