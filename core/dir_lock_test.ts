import assert from "node:assert/strict";
import { ConflictError } from "./errors.ts";
import { lockDir } from "./dir_lock.ts";

Deno.test("a locked dir refuses a second holder, naming the first one's pid; released, it can be taken again", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await lockDir(dir, "data dir", "--data-dir");
    await assert.rejects(lockDir(dir, "data dir", "--data-dir"), (e) => {
      assert.ok(e instanceof ConflictError);
      assert.match(
        e.message,
        new RegExp(`data dir ${dir} is in use by another Parallelic process \\(pid ${Deno.pid}\\)`),
      );
      assert.match(e.message, /another --data-dir/);
      return true;
    });
    first.release();
    const again = await lockDir(dir, "data dir", "--data-dir");
    again.release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("a lock left by a killed process does not hold the dir", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const holder = new Deno.Command(Deno.execPath(), {
      args: [
        "eval",
        `await (await import(${JSON.stringify(import.meta.resolve("./dir_lock.ts"))})).lockDir(${
          JSON.stringify(dir)
        }, "work dir", "--work-dir"); console.log("held"); setInterval(() => {}, 1000);`,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const reader = holder.stdout.getReader();
    assert.match(new TextDecoder().decode((await reader.read()).value), /held/);
    await assert.rejects(lockDir(dir, "work dir", "--work-dir"), new RegExp(`\\(pid ${holder.pid}\\)`));
    holder.kill("SIGKILL");
    await holder.status;
    reader.releaseLock();
    await holder.stdout.cancel();
    (await lockDir(dir, "work dir", "--work-dir")).release();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
