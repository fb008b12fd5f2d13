import assert from "node:assert/strict";
import { join } from "node:path";
import * as zip from "@zip.js/zip.js";
import { ConflictError } from "../core/errors.ts";
import { openBucket } from "../core/objects.ts";
import { logSubject, outputObject, type TaskRecord, WORKSPACE_BUCKET } from "../core/schema.ts";
import { readTar, tarStream } from "../core/tar.ts";
import { parseTaskToml } from "../core/task_toml.ts";
import { startTestNats, testLogger } from "../tests/kit/mod.ts";
import { instanceKey, taskKey } from "../core/kv.ts";
import { createWorkspaceService } from "./workspace.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const text = (path: string, content: string) => {
  const bytes = new TextEncoder().encode(content);
  return { path, size: bytes.byteLength, mode: 0o644, open: () => ReadableStream.from([bytes]) };
};

function task(id: string, digest: string, state: TaskRecord["state"], toml: string): TaskRecord {
  return {
    id,
    name: "t",
    owner: "alice",
    digest,
    packageBytes: 3,
    spec: parseTaskToml(toml),
    state,
    counts: { queued: 0, running: 0, succeeded: 2, failed: 0, cancelled: 0 },
    nextIndex: 2,
    createdAt: 0,
    startedAt: 0,
    endedAt: 0,
    reason: null,
    finalize: "succeeded",
    outputBytes: 100,
    logBytes: 4,
    cpuMs: 0,
    wallMs: 0,
    maxRssBytes: 0,
    reruns: 0,
    held: false,
    overrides: null,
    nodeFailures: {},
    nodeSuccesses: {},
    hint: null,
  };
}

async function setup(nats: Awaited<ReturnType<typeof startTestNats>>) {
  const kv = await Deno.openKv(join(nats.dir, "state.kv"));
  const ws = await createWorkspaceService({ nc: nats.nc, kv, log: testLogger() });
  const bucket = await openBucket(nats.nc, WORKSPACE_BUCKET);
  return { kv, ws, bucket, [Symbol.dispose]: () => kv.close() };
}

Deno.test({
  name: "workspace service streams a task's outputs as zip and tar, whole or one part at the root",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    using t = await setup(nats);
    const { ws, bucket } = t;
    const rec = task(
      "t000000000000aaaa",
      `sha256-${"a".repeat(64)}`,
      "succeeded",
      `[task]
entrypoint = "r.sh"
instances = 3
[finalize]
entrypoint = "m.sh"
`,
    );
    await bucket.put(outputObject(rec.id, 0), tarStream([text("r.txt", "zero"), text("d/e.txt", "deep")]));
    await bucket.put(outputObject(rec.id, 2), tarStream([text("r.txt", "two")]));
    await bucket.put(outputObject(rec.id, "finalize"), tarStream([text("merged.txt", "all")]));

    const bytes = new Uint8Array(await new Response(ws.zip(rec)).arrayBuffer());
    const reader = new zip.ZipReader(new zip.Uint8ArrayReader(bytes));
    const files: Record<string, string> = {};
    for (const e of await reader.getEntries()) {
      files[e.filename] = await (e as zip.FileEntry).getData(new zip.TextWriter());
    }
    assert.deepEqual(files, { "0/r.txt": "zero", "0/d/e.txt": "deep", "2/r.txt": "two", "finalize/merged.txt": "all" });

    const names = async (s: ReadableStream<Uint8Array>) => {
      const out: string[] = [];
      for await (const e of readTar(s)) out.push(e.path);
      return out;
    };
    assert.deepEqual(await names(ws.tar(rec, { finalize: true })), ["merged.txt"]);
    assert.deepEqual(await names(ws.tar(rec, { instance: 0 })), ["r.txt", "d/e.txt"]);
    assert.deepEqual(await names(ws.tar(rec, { instance: 1 })), []);
    assert.deepEqual(await names(ws.tar({ ...rec, outputBytes: 0 })), [], "no outputs recorded: no lookups");
  },
});

Deno.test({
  name: "workspace service deletes a finished task with its outputs, logs, records and unshared package",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    using t = await setup(nats);
    const { kv, ws, bucket } = t;
    const digest = `sha256-${"b".repeat(64)}` as const;
    await ws.putPackage(digest, new Uint8Array([1, 2, 3]));
    const toml = `[task]\nentrypoint = "r.sh"\ninstances = 2\n`;
    const a = task("t000000000000aaaa", digest, "succeeded", toml);
    const b = task("t000000000000bbbb", digest, "running", toml);
    for (const t of [a, b]) {
      await kv.set(taskKey(t.id), t);
      await kv.set(instanceKey(t.id, 0), { index: 0 });
      await kv.set(instanceKey(t.id, 1), { index: 1 });
      await bucket.put(outputObject(t.id, 1), tarStream([text("r.txt", t.id)]));
      // As nodes send them: the log stream acknowledges nothing.
      nats.nc.publish(logSubject(t.id, 0, "n1"), new TextEncoder().encode("log!"));
    }
    await nats.nc.flush();
    await assert.rejects(
      ws.deleteTask(b),
      (e) => e instanceof ConflictError && /as it is running: cancel it first/.test(e.message),
    );

    const { freedBytes } = await ws.deleteTask(a);
    assert.ok(freedBytes > 0);
    assert.equal((await kv.get(taskKey(a.id))).value, null);
    assert.equal((await kv.get(instanceKey(a.id, 1))).value, null);
    assert.equal(await bucket.info(outputObject(a.id, 1)), null);
    assert.ok(await bucket.info(outputObject(b.id, 1)), "the other task's outputs stay");
    assert.ok(await ws.getPackage(digest), "the package stays while another task uses it");
    const storage = await ws.storage();
    assert.ok(storage.logs > 0 && storage.packages > 0 && storage.workspaces > 0);

    await kv.set(taskKey(b.id), { ...b, state: "cancelled" });
    await ws.deleteTask({ ...b, state: "cancelled" });
    assert.equal(await ws.getPackage(digest), null, "the last task's package goes with it");
    assert.equal((await ws.storage()).workspaces < storage.workspaces, true);
  },
});
