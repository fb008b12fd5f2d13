/**
 * End to end: shared data sets and task workspaces, with a real manager and
 * compute nodes running as their own processes.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import * as zip from "@zip.js/zip.js";
import { jetstreamManager } from "@nats-io/jetstream";
import { dataBytesKey, instancesOf } from "../core/kv.ts";
import { DEFAULT_PACKAGE_LIMITS } from "../core/package.ts";
import { openBucket } from "../core/objects.ts";
import {
  DATA_BUCKET,
  type DataSetView,
  LOG_STREAM,
  logSubjectsOfTask,
  type TaskView,
  WORKSPACE_BUCKET,
} from "../core/schema.ts";
import {
  listInstances,
  makeZip,
  nodesReady,
  runCli,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const BIG_BYTES = 200 * 2 ** 20;

const cli = runCli;

/** Writes `bytes` of real (not sparse) data, 1 MiB at a time, each MiB different. */
async function writeBigFile(path: string, bytes: number) {
  const file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = new Uint8Array(2 ** 20);
  crypto.getRandomValues(block.subarray(0, 65536));
  for (let i = 65536; i < block.length; i += 65536) block.copyWithin(i, 0, 65536);
  for (let written = 0, n = 0; written < bytes; written += block.length, n++) {
    new DataView(block.buffer).setUint32(0, n);
    await file.write(block.subarray(0, Math.min(block.length, bytes - written)));
  }
  file.close();
}

async function zipEntries(bytes: Uint8Array): Promise<Map<string, string>> {
  const reader = new zip.ZipReader(new zip.Uint8ArrayReader(bytes));
  const out = new Map<string, string>();
  for (const entry of await reader.getEntries()) {
    if (!entry.directory) out.set(entry.filename, await (entry as zip.FileEntry).getData(new zip.TextWriter()));
  }
  await reader.close();
  return out;
}

const fetchedLines = (output: string) => output.split("\n").filter((l) => l.includes("node:data-fetched"));

Deno.test({
  name:
    "a 200 MiB data set is fetched once per node, read-only for 8 instances on 2 nodes; outputs, finalize, refusals and rm",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const dataDir = join(work.path, "textures");
    await Deno.mkdir(join(dataDir, "sub"), { recursive: true });
    await Deno.mkdir(join(dataDir, ".git"), { recursive: true });
    await Deno.writeTextFile(join(dataDir, "a.txt"), "alpha");
    await Deno.writeTextFile(join(dataDir, "sub", "b.txt"), "beta");
    await Deno.writeTextFile(join(dataDir, ".git", "HEAD"), "left out");
    await writeBigFile(join(dataDir, "big.bin"), BIG_BYTES);

    // Upload through the CLI: streamed as a tar, stored content-addressed.
    const put = await cli(tm, "data", "put", "textures", dataDir);
    assert.equal(put.code, 0, put.stderr);
    const [, version] = /^textures@(sha256:[0-9a-f]{64})$/m.exec(put.stdout)!;
    assert.match(put.stderr, /Data set textures: 3 files, 200\.0 MiB/);
    const set = await (await tm.api("/api/v1/data/textures")).json() as DataSetView;
    assert.equal(set.versions[0].version, version);
    assert.equal(set.versions[0].files, 3, ".git left out");
    const again = await cli(tm, "data", "put", "textures", dataDir);
    assert.match(again.stderr, /Already stored/);
    assert.equal((await (await tm.api("/api/v1/data/textures")).json() as DataSetView).versions.length, 1);

    await using a = startNodeProcess(tm.manager.natsUrl, "node-a", join(work.path, "a"), ["--slots=2"]);
    await using b = startNodeProcess(tm.manager.natsUrl, "node-b", join(work.path, "b"), ["--slots=2"]);
    await nodesReady(tm.api, 2);
    const pkg = await makeZip({
      "task.toml": `[task]
entrypoint = "run.sh"
instances = 8
[data]
tex = "textures"
[outputs]
paths = ["out/**"]
[finalize]
entrypoint = "merge.sh"
`,
      "run.sh": `#!/bin/sh
set -e
d="$PARALLELIC_DATA_TEX"
o="$PARALLELIC_OUTPUT"
test "$(cat "$d/a.txt")" = alpha
if (echo x > "$d/a.txt") 2>/dev/null; then echo wrote > "$o/wrote"; fi
if touch "$d/new" 2>/dev/null; then echo created > "$o/created"; fi
if rm -f "$d/sub/b.txt" 2>/dev/null && [ ! -e "$d/sub/b.txt" ]; then echo deleted > "$o/deleted"; fi
echo "$PARALLELIC_INSTANCE $(wc -c < "$d/big.bin") $(cat "$d/sub/b.txt")" > "$o/result.txt"
mkdir -p out/deep && echo "glob $PARALLELIC_INSTANCE" > out/deep/g.txt
sleep 0.3
`,
      "merge.sh": `#!/bin/sh
set -e
ls "$PARALLELIC_WORKSPACE" | sort -n | tr '\\n' ' ' > "$PARALLELIC_OUTPUT/instances.txt"
cat "$PARALLELIC_WORKSPACE"/*/result.txt | sort -n > "$PARALLELIC_OUTPUT/merged.txt"
if touch "$PARALLELIC_WORKSPACE/x" 2>/dev/null; then echo yes > "$PARALLELIC_OUTPUT/workspace-writable"; fi
test "$(cat "$PARALLELIC_DATA_TEX/a.txt")" = alpha
`,
    });
    const res = await submitZip(tm, pkg, "render");
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    const task = await tm.waitForTask(id, 60_000).catch((e) => {
      throw new Error(`${e.message}\nnode-a:\n${a.output().slice(-3000)}\nnode-b:\n${b.output().slice(-3000)}`);
    });
    assert.equal(task.state, "succeeded", JSON.stringify(task));
    assert.equal(task.finalize, "succeeded");
    assert.deepEqual(task.spec.data, { tex: { name: "textures", version } }, "pinned at submit");
    assert.ok(task.outputBytes > 0);

    // Each node fetched the data set exactly once, for all of its instances (and finalize).
    const instances = await listInstances(tm.api, id);
    assert.deepEqual([...new Set(instances.map((i) => i.node))].sort(), ["node-a", "node-b"], "both nodes ran some");
    await a.kill();
    await b.kill();
    for (const node of [a, b]) {
      const lines = fetchedLines(node.output());
      assert.equal(lines.length, 1, `${node.name} fetched once: ${lines.join("\n")}`);
      assert.match(lines[0], new RegExp(`version=${version}`));
      assert.match(lines[0], /bytes=209715209/);
    }

    // Every instance's outputs (PARALLELIC_OUTPUT and the [outputs] globs) and finalize's come back in the zip.
    const zipRes = await tm.api(`/api/v1/tasks/${id}/workspace.zip`);
    assert.equal(zipRes.headers.get("content-type"), "application/zip");
    const files = await zipEntries(new Uint8Array(await zipRes.arrayBuffer()));
    for (let i = 0; i < 8; i++) {
      assert.equal(files.get(`${i}/result.txt`), `${i} ${BIG_BYTES} beta\n`);
      assert.equal(files.get(`${i}/out/deep/g.txt`), `glob ${i}\n`);
    }
    const written = [...files.keys()].filter((f) => /\/(wrote|created|deleted)$/.test(f));
    assert.deepEqual(written, [], "no instance could write into its data view");
    assert.equal(files.get("finalize/instances.txt"), "0 1 2 3 4 5 6 7 ");
    assert.equal(
      files.get("finalize/merged.txt"),
      Array.from({ length: 8 }, (_, i) => `${i} ${BIG_BYTES} beta\n`).join(""),
    );
    assert.ok(!files.has("finalize/workspace-writable"), "finalize could not write into the workspace");
    const one = await zipEntries(
      new Uint8Array(await (await tm.api(`/api/v1/tasks/${id}/workspace.zip?instance=3`)).arrayBuffer()),
    );
    assert.deepEqual([...one.keys()].sort(), ["out/deep/g.txt", "result.txt"]);

    // The CLI downloads finalize's output into a folder.
    const outDir = join(work.path, "merged");
    const got = await cli(tm, "results", id, "--finalize", "-o", outDir);
    assert.equal(got.code, 0, got.stderr);
    assert.match(await Deno.readTextFile(join(outDir, "merged.txt")), /^7 209715200 beta$/m);

    // A version a queued or running task uses cannot be deleted.
    const blocker = await (await submitZip(
      tm,
      await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\n[data]\ntex = "textures@${version.slice(0, 15)}"\n`,
        "run.sh": "#!/bin/sh\nsleep 30\n",
      }),
    )).json();
    const refused = await tm.api(`/api/v1/data/textures/${version}`, { method: "DELETE" });
    assert.equal(refused.status, 409);
    assert.match(
      (await refused.json()).error.message,
      new RegExp(
        `Cannot delete data set 'textures' version ${
          version.slice(0, 19)
        }… as it is used by task ${blocker.id} \\((queued|running)\\)`,
      ),
    );
    const rmBusy = await cli(tm, "rm", blocker.id);
    assert.equal(rmBusy.code, 1);
    assert.match(rmBusy.stderr, /Cannot delete task '.*' as it is (queued|running): cancel it first/);
    await tm.api(`/api/v1/tasks/${blocker.id}/cancel`, { method: "POST" });

    // rm frees the task's objects, logs and records.
    const nc = await tm.connectNats();
    try {
      const ws = await openBucket(nc, WORKSPACE_BUCKET);
      const ours = async () => (await ws.list()).filter((o) => o.name.startsWith(`${id}/`)).length;
      assert.equal(await ours(), 9, "8 instances and finalize stored outputs");
      const jsm = await jetstreamManager(nc);
      const logs = async () =>
        Object.keys(
          (await jsm.streams.info(LOG_STREAM, { subjects_filter: logSubjectsOfTask(id) })).state.subjects ?? {},
        )
          .length;
      const removed = await cli(tm, "rm", id);
      assert.equal(removed.code, 0, removed.stderr);
      assert.match(removed.stdout, new RegExp(`Deleted task ${id}`));
      assert.equal(await ours(), 0, "workspace objects deleted");
      assert.equal(await logs(), 0, "logs purged");
      assert.equal((await tm.api(`/api/v1/tasks/${id}`)).status, 404);
      const kv = await Deno.openKv(join(tm.dataDir, "state.kv"));
      try {
        assert.equal((await Array.fromAsync(kv.list({ prefix: instancesOf(id) }))).length, 0, "instance records gone");
        // The data set no longer used by a live task can go; its content is freed.
        const dataBucket = await openBucket(nc, DATA_BUCKET);
        const before = await dataBucket.bytes();
        const rm = await cli(tm, "data", "rm", "textures");
        assert.equal(rm.code, 0, rm.stderr);
        assert.ok(before - (await dataBucket.bytes()) >= BIG_BYTES, "the 200 MiB are freed");
        assert.equal((await kv.get(dataBytesKey("textures"))).value, null);
      } finally {
        kv.close();
      }
    } finally {
      await nc.close();
    }
  },
});

Deno.test({
  name: "unknown data sets, over-limit uploads and packages are refused with the key, line, limit and size",
  ...opts,
  async fn() {
    await using tm = await startTestManager({
      maxDataSetBytes: 1000,
      limits: { ...DEFAULT_PACKAGE_LIMITS, maxPackageBytes: 4000 },
    });
    const unknown = await submitZip(
      tm,
      await makeZip({
        "task.toml": `[task]\nentrypoint = "r.sh"\n\n[data]\nmodel = "weights"\n`,
        "r.sh": "#!/bin/sh\n",
      }),
    );
    assert.equal(unknown.status, 400);
    assert.equal(
      (await unknown.json()).error.message,
      `task.toml line 5: key 'data.model' = "weights": data set 'weights' does not exist or is not shared with you`,
    );
    assert.equal(((await (await tm.api("/api/v1/tasks")).json()) as { tasks: TaskView[] }).tasks.length, 0);

    const declared = await tm.api("/api/v1/data/big", {
      method: "POST",
      headers: { "content-type": "application/x-tar", "parallelic-upload-bytes": "5000" },
      body: new Uint8Array(1024),
    });
    assert.equal(declared.status, 413);
    assert.equal(
      (await declared.json()).error.message,
      "Cannot store data set 'big' as its size 5000 bytes exceeds the limit of 1000 bytes",
    );
    const streamed = await tm.api("/api/v1/data/big?file=blob.bin", {
      method: "POST",
      headers: { "content-type": "application/octet-stream" },
      body: ReadableStream.from([new Uint8Array(800), new Uint8Array(800)]),
    });
    assert.equal(streamed.status, 413);
    assert.match(
      (await streamed.json()).error.message,
      /size \(at least 1600 bytes so far\) exceeds the limit of 1000 bytes/,
    );
    assert.deepEqual(await (await tm.api("/api/v1/data")).json(), { datasets: [] });

    const random = new Uint8Array(6000);
    crypto.getRandomValues(random);
    const bigPkg = await makeZip({
      "task.toml": `[task]\nentrypoint = "r.sh"\n`,
      "r.sh": "#!/bin/sh\n",
      "noise.txt": Array.from(random, (b) => String.fromCharCode(33 + (b % 90))).join(""),
    });
    const pkg = await tm.api("/api/v1/tasks", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: ReadableStream.from([bigPkg]),
    });
    assert.equal(pkg.status, 413);
    assert.match(
      (await pkg.json()).error.message,
      /Cannot accept package as its size .* exceeds the limit of 4000 bytes/,
    );
  },
});

Deno.test({
  name:
    "the CLI leaves out .git and .parallelicignore'd files, prints the package size, and `results -o` unpacks outputs",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 2 });
    await using dir = await tempDir();
    const root = join(dir.path, "lister");
    await Deno.mkdir(join(root, ".git"), { recursive: true });
    await Deno.mkdir(join(root, "build"), { recursive: true });
    await Deno.writeTextFile(join(root, ".git", "config"), "x");
    await Deno.writeTextFile(join(root, "build", "huge.o"), "x");
    await Deno.writeTextFile(join(root, "secret.env"), "x");
    await Deno.writeTextFile(join(root, "keep.txt"), "kept");
    await Deno.writeTextFile(join(root, ".parallelicignore"), "build/\n*.env\n");
    await Deno.writeTextFile(join(root, "task.toml"), `[task]\nentrypoint = "run.sh"\ninstances = 2\n`);
    await Deno.writeTextFile(
      join(root, "run.sh"),
      `#!/bin/sh\nfind . -type f | sort > "$PARALLELIC_OUTPUT/files.txt"\n`,
      { mode: 0o755 },
    );
    const sub = await cli(tm, "submit", root, "--wait");
    assert.equal(sub.code, 0, sub.stderr);
    assert.match(sub.stderr, /Package lister: \d+(\.\d)? (B|KiB)/);
    const id = sub.stdout.trim();
    const out = join(dir.path, "out");
    const got = await cli(tm, "results", id, "-o", out);
    assert.equal(got.code, 0, got.stderr);
    const listed = await Deno.readTextFile(join(out, "1", "files.txt"));
    assert.deepEqual(listed.trim().split("\n"), ["./.parallelicignore", "./keep.txt", "./run.sh", "./task.toml"]);
    const zipped = join(dir.path, "all.zip");
    assert.equal((await cli(tm, "results", id, "-o", zipped)).code, 0);
    const files = await zipEntries(await Deno.readFile(zipped));
    assert.deepEqual([...files.keys()].sort(), ["0/files.txt", "1/files.txt"]);
    const status = await cli(tm, "status", id);
    assert.match(status.stdout, /Space\s+outputs \d/);
  },
});

Deno.test({
  name: "a retry that leaves no outputs replaces what its failed attempt left; a first attempt without any stores none",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true });
    // Instance 0 leaves an output and fails, then succeeds leaving none; instance 1 never leaves any.
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 2\n[limits]\nretries = 1\n`,
      "run.sh": {
        content: `#!/bin/sh
if [ "$PARALLELIC_INSTANCE" = 0 ] && [ "$PARALLELIC_ATTEMPT" = 0 ]; then
  echo stale > "$PARALLELIC_OUTPUT/stale.txt"
  exit 1
fi
exit 0
`,
        mode: 0o755,
      },
    });
    const id = (await (await submitZip(tm, zip)).json()).id;
    const task = await tm.waitForTask(id);
    assert.equal(task.state, "succeeded");
    const list = await listInstances(tm.api, id);
    assert.deepEqual(list[0].history.map((h) => [h.attempt, h.exitCode]), [[0, 1], [1, 0]]);
    assert.ok((list[0].history[0].outputBytes ?? 0) > 0, "the failed attempt stored its output");
    assert.equal(list[0].history[1].outputBytes, 0);
    assert.equal(list[1].history[0].outputBytes, 0);
    const files = await zipEntries(
      new Uint8Array(await (await tm.api(`/api/v1/tasks/${id}/workspace.zip`)).arrayBuffer()),
    );
    assert.deepEqual([...files.keys()], [], "the retry's (empty) outputs replaced the failed attempt's");
    assert.equal((await (await tm.api(`/api/v1/tasks/${id}`)).json()).outputBytes, 0);
    // Nor is the failed attempt's object kept in the bucket.
    const nc = await tm.connectNats();
    try {
      const ws = await openBucket(nc, WORKSPACE_BUCKET);
      assert.deepEqual((await ws.list()).filter((o) => o.name.startsWith(`${id}/`)).map((o) => o.name), []);
    } finally {
      await nc.close();
    }
  },
});
