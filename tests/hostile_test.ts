/**
 * Hostile input against a real manager and node: the hostile-package corpus
 * (each refused with a 4xx naming the problem, nothing written outside the
 * node's work dir or the manager's data dir, nothing left in the object
 * store) and a bounded fuzz test of packages and task.toml files.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { Objm } from "@nats-io/obj";
import { unpackPackage } from "../core/package.ts";
import { PACKAGE_BUCKET } from "../core/schema.ts";
import { hostileCorpus } from "./hostile_corpus.ts";
import {
  makeZip,
  type NodeProcess,
  startNodeProcess,
  startTestManager,
  submitZip,
  tempDir,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (rel: string) => {
    for await (const e of Deno.readDir(join(dir, rel))) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      out.push(path);
      if (e.isDirectory) await walk(path);
    }
  };
  await walk("");
  return out.sort();
}

async function storedPackages(tm: Awaited<ReturnType<typeof startTestManager>>): Promise<number> {
  const nc = await tm.connectNats();
  try {
    return (await (await new Objm(nc).open(PACKAGE_BUCKET)).list()).length;
  } finally {
    await nc.close();
  }
}

Deno.test({
  name: "every package of the hostile corpus is refused with a 4xx naming the problem, and leaves nothing behind",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    await using work = await tempDir();
    const outside = join(work.path, "outside", "pwned");
    await using node: NodeProcess = startNodeProcess(tm.manager.natsUrl, "hostile-node", join(work.path, "node"));
    await waitUntil(async () => (await (await tm.api("/api/v1/nodes")).json()).nodes.length === 1, 20_000, "the node");
    const nodeBefore = await listTree(join(work.path, "node"));
    const corpus = await hostileCorpus(outside);
    for (const c of corpus) {
      const res = await submitZip(tm, c.bytes, "hostile");
      const body = await res.json();
      assert.equal(res.status, c.status, `${c.what}: ${JSON.stringify(body)}`);
      assert.equal(body.error.code, c.code, `${c.what}: ${body.error.message}`);
      assert.match(body.error.message, c.message, c.what);
      // The node's unpacker, given the same bytes, refuses them too and writes nothing outside its folder.
      if (c.tomlOnly) continue;
      const into = join(work.path, "unpack", String(corpus.indexOf(c)));
      await assert.rejects(
        unpackPackage(c.bytes, into, "run.sh"),
        (e: Error) => e.name === "ValidationError" || e.name === "TooLargeError",
        c.what,
      );
    }
    await assert.rejects(Deno.stat(outside), Deno.errors.NotFound, "nothing was written outside");
    await assert.rejects(Deno.stat(join(work.path, "outside")), Deno.errors.NotFound);
    assert.equal(await storedPackages(tm), 0, "nothing in the object store");
    assert.deepEqual((await (await tm.api("/api/v1/tasks")).json()).tasks, [], "no task was created");
    assert.deepEqual(await listTree(join(work.path, "node")), nodeBefore, "the node's work dir is unchanged");
    for (const f of await listTree(tm.dataDir)) assert.doesNotMatch(f, /pwned|evil/, `data dir holds ${f}`);
    assert.deepEqual(await listTree(join(tm.dataDir, "uploads")), [], "no spooled upload is left");
    // And the manager still serves.
    assert.equal((await tm.api("/healthz", { token: null })).status, 200);
    const good = await submitZip(
      tm,
      await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\necho fine\n" }),
    );
    assert.equal(good.status, 201);
    assert.equal((await tm.waitForTask((await good.json()).id)).state, "succeeded");
    assert.match(node.output(), /node:registered/);
  },
});

/** A small deterministic PRNG (mulberry32), so a failing seed can be replayed. */
function prng(seed: number) {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  return { next, int: (n: number) => Math.floor(next() * n), pick: <T>(xs: T[]) => xs[Math.floor(next() * xs.length)] };
}

const BASE_TOML = `[task]
name = "fuzz"
entrypoint = "bin/run.sh"
workdir = "data"
args = ["--fast", "x"]
instances = 3

[env]
GREETING = "hi"

[resources]
cpus = 1
memory = "64MiB"

[limits]
timeout = "10s"
retries = 1
priority = 50
`;
const PIECES = [
  "[",
  "]",
  "=",
  '"',
  "'",
  ".",
  ",",
  "\n",
  "{",
  "}",
  "0",
  "-1",
  "1e999",
  "999999999999",
  "true",
  "x",
  "\\u0000",
  "..",
  "/",
  "#",
  " ",
  "[[task]]",
  "matrix",
  "from",
  "to",
  "step",
];

function mutateText(r: ReturnType<typeof prng>, text: string): string {
  let s = text;
  for (let n = 1 + r.int(4); n > 0; n--) {
    const at = r.int(s.length + 1);
    switch (r.int(4)) {
      case 0:
        s = s.slice(0, at) + s.slice(at + 1 + r.int(8));
        break;
      case 1:
        s = s.slice(0, at) + r.pick(PIECES) + s.slice(at);
        break;
      case 2: {
        const lines = s.split("\n");
        lines.splice(r.int(lines.length), 0, r.pick(lines));
        s = lines.join("\n");
        break;
      }
      default:
        s = s.slice(0, at) + s.slice(at).replace(/\d+/, String(r.pick([0, -1, 2 ** 31, 1_000_001, 1e21])));
    }
  }
  return s;
}

function mutateBytes(r: ReturnType<typeof prng>, bytes: Uint8Array): Uint8Array {
  let b: Uint8Array = bytes.slice();
  switch (r.int(4)) {
    case 0:
      for (let n = 1 + r.int(8); n > 0; n--) b[r.int(b.length)] = r.int(256);
      break;
    case 1:
      b = b.slice(0, r.int(b.length));
      break;
    case 2: {
      const at = r.int(b.length);
      const junk = crypto.getRandomValues(new Uint8Array(1 + r.int(64)));
      b = new Uint8Array([...b.slice(0, at), ...junk, ...b.slice(at)]);
      break;
    }
    default: {
      // Copy a slice over another place (headers over data, data over the directory).
      const from = r.int(b.length);
      const len = 1 + r.int(64);
      b.set(
        b.slice(from, from + len).subarray(0, Math.max(0, b.length - r.int(b.length))),
        r.int(Math.max(1, b.length - len)),
      );
    }
  }
  return b;
}

Deno.test({
  name: "fuzzed packages and task.toml files never get a 5xx, and the manager keeps serving (300 cases or 20 s)",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const seed = Number(Deno.env.get("PARALLELIC_FUZZ_SEED") ?? Date.now() % 1e9);
    console.log(`fuzz seed ${seed} (replay with PARALLELIC_FUZZ_SEED=${seed})`);
    const r = prng(seed);
    const run = "#!/bin/sh\necho fuzz\n";
    const base = await makeZip({ "task.toml": BASE_TOML, "bin/run.sh": run, "data/in.txt": "x" });
    const deadline = Date.now() + 20_000;
    const statuses = new Map<number, number>();
    let cases = 0;
    for (; cases < 300 && Date.now() < deadline; cases++) {
      let bytes: Uint8Array;
      let what: string;
      if (r.next() < 0.5) {
        const toml = mutateText(r, BASE_TOML);
        bytes = await makeZip({ "task.toml": toml, "bin/run.sh": run, "data/in.txt": "x" });
        what = `task.toml ${JSON.stringify(toml)}`;
      } else {
        bytes = mutateBytes(r, base);
        what = `zip bytes (case ${cases})`;
      }
      // One case in five also lies about its content type (a multipart body that is not one, …).
      const type = r.next() < 0.2
        ? r.pick(["multipart/form-data; boundary=x", "multipart/form-data", "text/plain", "application/json", ""])
        : "application/zip";
      const res = await tm.api(`/api/v1/tasks?name=fuzz`, {
        method: "POST",
        headers: type ? { "content-type": type } : {},
        body: bytes as Uint8Array<ArrayBuffer>,
      });
      const text = await res.text();
      statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
      assert.ok(res.status < 500, `seed ${seed} case ${cases}: ${res.status} ${text} for ${what}`);
      assert.ok(res.status === 201 || JSON.parse(text).error.message.length > 0, `a refusal says why: ${text}`);
    }
    console.log(`${cases} cases: ${JSON.stringify(Object.fromEntries(statuses))}`);
    assert.ok(cases >= 50, `at least 50 cases ran (ran ${cases})`);
    assert.ok((statuses.get(400) ?? 0) > 0, "some mutations were refused");
    assert.equal((await tm.api("/healthz", { token: null })).status, 200);
    const res = await submitZip(tm, base, "fuzz");
    assert.equal(res.status, 201, "a valid package is still taken");
  },
});
