import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { systemClock } from "../../core/clock.ts";
import { manifestText, versionOf } from "../../core/data_manifest.ts";
import { ConflictError, NotFoundError, TooLargeError, ValidationError } from "../../core/errors.ts";
import { openBucket } from "../../core/objects.ts";
import { DATA_BUCKET, type TaskRecord } from "../../core/schema.ts";
import { type TarSource, tarStream } from "../../core/tar.ts";
import { parseTaskToml } from "../../core/task_toml.ts";
import { startTestNats, testLogger, waitUntil } from "../../tests/kit/mod.ts";
import { createDataService } from "./mod.ts";
import { dataUseKey, taskKey } from "../../core/kv.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const text = (path: string, content: string, mode = 0o644): TarSource => {
  const bytes = new TextEncoder().encode(content);
  return { path, size: bytes.byteLength, mode, open: () => ReadableStream.from([bytes]) };
};
const tar = (...files: TarSource[]) => tarStream(files);

async function setup(
  nats: { nc: import("@nats-io/transport-node").NatsConnection; dir: string },
  max?: number,
  maxFiles?: number,
) {
  const kv = await Deno.openKv(join(nats.dir, "state.kv"));
  const data = await createDataService({ nc: nats.nc, kv, clock: systemClock, log: testLogger() }, {
    maxDataSetBytes: max,
    maxDataSetFiles: maxFiles,
  });
  const bucket = await openBucket(nats.nc, DATA_BUCKET);
  const names = async (prefix: string) =>
    (await bucket.list()).map((i) => i.name).filter((n) => n.startsWith(prefix)).sort();
  return { kv, data, names, [Symbol.dispose]: () => kv.close() };
}

Deno.test({
  name: "data service stores each distinct content once and names versions by their manifest",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    using t = await setup(nats);
    const first = await t.data.put(
      "textures",
      tar(text("a.txt", "same"), text("dir/b.txt", "same"), text("run.sh", "#!/bin/sh\n", 0o755)),
      { format: { kind: "tar" }, owner: "alice" },
    );
    assert.equal(first.created, true);
    assert.match(first.record.version, /^sha256:[0-9a-f]{64}$/);
    assert.equal(first.record.files, 3);
    assert.equal(first.record.bytes, 4 + 4 + 10);
    assert.equal(first.record.newBytes, 14, "identical files stored once");
    assert.equal((await t.names("blob/")).length, 2);

    const again = await t.data.put(
      "textures",
      tar(text("run.sh", "#!/bin/sh\n", 0o755), text("dir/b.txt", "same"), text("a.txt", "same")),
      { format: { kind: "tar" }, owner: "bob", admin: true },
    );
    assert.equal(again.created, false, "same files in another order: same version");
    assert.equal(again.record.version, first.record.version);
    assert.equal(again.record.owner, "alice");

    const second = await t.data.put("textures", tar(text("a.txt", "same"), text("c.txt", "new")), {
      format: { kind: "tar" },
      owner: "alice",
    });
    assert.notEqual(second.record.version, first.record.version);
    assert.equal(second.record.newBytes, 3, "only the new content is stored");
    const single = await t.data.put("model", ReadableStream.from([new TextEncoder().encode("weights")]), {
      format: { kind: "file", path: "model.bin" },
      owner: "alice",
    });
    assert.equal(single.record.files, 1);

    const sets = await t.data.list();
    assert.deepEqual(sets.map((s) => s.name), ["model", "textures"]);
    const textures = sets[1];
    assert.deepEqual(textures.versions.map((v) => v.version), [second.record.version, first.record.version]);
    assert.equal(textures.bytes, 4 + 10 + 3, "distinct bytes across versions");
    assert.deepEqual(await t.names("tmp/"), [], "no temporary objects left");
    await assert.rejects(t.data.get("nope"), NotFoundError);
  },
});

Deno.test({
  name: "data service refuses bad names, bad entries and over-limit uploads before storing them",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    using t = await setup(nats, 1000);
    const put = (name: string, body: ReadableStream<Uint8Array>, declaredBytes?: number) =>
      t.data.put(name, body, { format: { kind: "tar" }, owner: "alice", declaredBytes });
    await assert.rejects(
      put("../x", tar(text("a", "a"))),
      (e) => e instanceof ValidationError && /data set name/.test(e.message),
    );
    await assert.rejects(
      put("ok", tar(text("a", "a")), 5000),
      (e) => e instanceof TooLargeError && /size 5000 bytes exceeds the limit of 1000 bytes/.test(e.message),
    );
    await assert.rejects(
      put("ok", tar(text("small", "x"), text("big", "y".repeat(2000)))),
      (e) => e instanceof TooLargeError && /exceeds the limit of 1000 bytes/.test(e.message),
    );
    await assert.rejects(
      t.data.put("ok", ReadableStream.from([new Uint8Array(600), new Uint8Array(600)]), {
        format: { kind: "file", path: "f" },
        owner: "alice",
      }),
      TooLargeError,
    );
    await assert.rejects(put("ok", tar(text("../../etc/x", "x"))), /entry '..\/..\/etc\/x' escapes its root/);
    await assert.rejects(put("ok", tar()), /holds no files/);
    await assert.rejects(put("ok", tar(text("a", "1"), text("./a", "2"))), /entry 'a' appears twice/);
    await assert.rejects(put("ok", ReadableStream.from([new Uint8Array(512).fill(1)])), /not a tar header/);
    assert.deepEqual(await t.data.list(), []);
    // What a failed upload stored before it failed is swept without being asked.
    await waitUntil(async () => (await t.names("")).length === 0, 5000, "the bucket to be empty");
  },
});

Deno.test({
  name: "data service pins versions at submit, refuses to delete what a live task uses, and frees unshared content",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    using t = await setup(nats);
    const v1 =
      (await t.data.put("set", tar(text("shared", "s"), text("old", "o")), { format: { kind: "tar" }, owner: "a" }))
        .record.version;
    const v2 =
      (await t.data.put("set", tar(text("shared", "s"), text("new", "n")), { format: { kind: "tar" }, owner: "a" }))
        .record.version;
    const toml = `[task]\nentrypoint = "r.sh"\n[data]\nlatest = "set"\nold = "set@${v1.slice(0, 15)}"\n`;
    let pinned: TaskRecord["spec"] | null = null;
    const task = await t.data.submitWith(parseTaskToml(toml), toml, async (spec) => {
      pinned = spec;
      const rec = { id: "t0000000000abcdef", state: "running", spec } as unknown as TaskRecord;
      // What the task actor stores with the task: the record and the uses of its pinned versions.
      const op = t.kv.atomic().set(taskKey(rec.id), rec);
      for (const [key, { name, version }] of Object.entries(spec.data ?? {})) {
        op.set(dataUseKey(version!, rec.id), { taskId: rec.id, name, key });
      }
      await op.commit();
      return rec;
    });
    assert.deepEqual(pinned!.data, { latest: { name: "set", version: v2 }, old: { name: "set", version: v1 } });

    const bad = `[task]\nentrypoint = "r.sh"\n[data]\nx = "set"\nmissing = "nope"\n`;
    await assert.rejects(
      t.data.submitWith(parseTaskToml(bad), bad, () => Promise.reject(new Error("must not submit"))),
      (e) =>
        e instanceof ValidationError &&
        /task.toml line 5: key 'data.missing' = "nope": data set 'nope' does not exist/.test(e.message),
    );
    const badVersion = `[task]\nentrypoint = "r.sh"\n[data]\nx = "set@sha256:00000000"\n`;
    await assert.rejects(
      t.data.submitWith(parseTaskToml(badVersion), badVersion, () => Promise.reject(new Error("no"))),
      /line 4: key 'data.x' = "set@sha256:00000000": data set 'set' has no version sha256:00000000/,
    );

    await assert.rejects(
      t.data.remove("set", v1),
      (e) =>
        e instanceof ConflictError &&
        new RegExp(`version ${v1.slice(0, 19)}… as it is used by task ${task.id} \\(running\\)`).test(e.message),
    );
    await assert.rejects(t.data.remove("set"), ConflictError, "a whole set with a used version");
    assert.equal((await t.data.get("set")).versions.length, 2, "nothing deleted");

    await t.kv.set(taskKey(task.id), { ...task, state: "succeeded" });
    const blobsBefore = (await t.names("blob/")).length;
    const removed = await t.data.remove("set", v1.slice(0, 20));
    assert.deepEqual(removed.removed, [v1]);
    const hex = (c: string) => createHash("sha256").update(c).digest("hex");
    const manifest = manifestText([
      { path: "shared", size: 1, mode: 0o644, sha256: hex("s") },
      { path: "old", size: 1, mode: 0o644, sha256: hex("o") },
    ]);
    assert.equal(versionOf(manifest), v1);
    assert.equal(removed.freedBytes, 1 + manifest.length, "only 'old' (and the manifest) was unshared");
    assert.equal((await t.names("blob/")).length, blobsBefore - 1);
    assert.equal((await t.names("manifest/")).length, 1);
    await t.data.remove("set");
    await assert.rejects(t.data.get("set"), NotFoundError);
    assert.deepEqual(await t.names(""), []);
    await assert.rejects(t.data.remove("set"), NotFoundError);
  },
});

Deno.test({
  name: "data service refuses a version of more files than maxDataSetFiles, even empty ones, and stores nothing",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    using t = await setup(nats, undefined, 3);
    assert.equal(t.data.maxDataSetFiles, 3);
    const files = (n: number) => Array.from({ length: n }, (_, i) => text(`f${i}`, ""));
    await t.data.put("few", tar(...files(3)), { format: { kind: "tar" }, owner: "a" });
    await assert.rejects(
      t.data.put("many", tar(...files(4)), { format: { kind: "tar" }, owner: "a" }),
      (e) =>
        e instanceof TooLargeError && e.code === "data_set_too_many_files" &&
        /Cannot store data set 'many' as it holds more than 3 files \(--max-data-files\)/.test(e.message),
    );
    assert.deepEqual((await t.data.list()).map((d) => d.name), ["few"]);
    assert.deepEqual(await t.names("tmp/"), [], "nothing of the refused upload is left");
  },
});
