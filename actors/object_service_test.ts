import assert from "node:assert/strict";
import { createBus } from "../core/bus.ts";
import { CHUNK_BYTES, openBucket } from "../core/objects.ts";
import { remoteBucket } from "../node/remote_bucket.ts";
import { connectAsNode, startTestNats, testLogger, waitUntil } from "../tests/kit/mod.ts";
import { createObjectService, OBJECT_BUCKETS } from "./object_service.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };
const OBJECT_BYTES = 6 * CHUNK_BYTES + 1234;

/** Random bytes (getRandomValues fills at most 64 KiB at once). */
function randomBytes(size: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(size);
  for (let at = 0; at < size; at += 65536) crypto.getRandomValues(out.subarray(at, at + 65536));
  return out;
}

/** The object service over a packages bucket holding `count` objects, and node n1 that may read them all. */
async function setup(count: number, readBudgetBytes: number) {
  const nats = await startTestNats();
  const packages = await openBucket(nats.nc, OBJECT_BUCKETS.packages, { create: true });
  const workspace = await openBucket(nats.nc, OBJECT_BUCKETS.workspace, { create: true });
  const contents = new Map<string, Uint8Array>();
  for (let i = 0; i < count; i++) {
    const bytes = randomBytes(OBJECT_BYTES);
    contents.set(`p${i}`, bytes);
    await packages.put(`p${i}`, new Blob([bytes]).stream());
  }
  const abort = new AbortController();
  const held = [...contents.keys()].map((digest) => ({ taskId: "t", digest, instances: 1, dataVersions: [] }));
  const service = createObjectService({
    bus: createBus(nats.nc, testLogger()),
    log: testLogger(),
    buckets: {
      packages: () => Promise.resolve(packages),
      data: () => Promise.reject(new Error("no data sets here")),
      workspace: () => Promise.resolve(workspace),
    },
    // n1 holds attempt 0 of instance 0 of task t.
    assignments: { tasksOf: () => held, attemptOf: (_node, taskId, index) => taskId === "t" && index === 0 ? 0 : null },
    readBudgetBytes,
  }, { signal: abort.signal });
  const nodeNc = await connectAsNode(nats.server.url, "n1");
  const bus = createBus(nodeNc, testLogger());
  const remote = remoteBucket(bus, "n1", "packages");
  return {
    service,
    remote,
    workspace,
    outputs: remoteBucket(bus, "n1", "workspace"),
    contents,
    async [Symbol.asyncDispose]() {
      abort.abort();
      await nodeNc.close();
      await nats[Symbol.asyncDispose]();
    },
  };
}

Deno.test({
  name: "object service: reads at once hold no more than the read budget together, and each gets every byte",
  ...opts,
  async fn() {
    const budget = 3 * CHUNK_BYTES;
    await using env = await setup(4, budget);
    const got = await Promise.all([...env.contents.keys()].map(async (name) => {
      const read = await env.remote.read(name);
      return new Uint8Array(await new Response(read!.body).arrayBuffer());
    }));
    // The remote reader checks each object's digest; the bytes match too.
    assert.deepEqual(got, [...env.contents.values()]);
    const peak = env.service.readBudget.peakBytes();
    assert.ok(peak > 0 && peak <= budget, `peak ${peak} of ${budget}`);
    assert.equal(env.service.reads(), 0);
    assert.equal(env.service.readBudget.usedBytes(), 0, "every read gave its part back");
  },
});

Deno.test({
  name: "object service: a node that gives up a read or a write ends it on the manager at once",
  ...opts,
  async fn() {
    await using env = await setup(1, 64 * CHUNK_BYTES);
    const read = await env.remote.read("p0");
    const reader = read!.body.getReader();
    assert.ok((await reader.read()).value!.byteLength > 0);
    assert.equal(env.service.reads(), 1);
    assert.ok(env.service.readBudget.usedBytes() > 0, "the read holds chunks ahead");
    await reader.cancel();
    // The service drops idle sessions only after a minute: this is the node's close.
    await waitUntil(() => env.service.reads() === 0, 5000, "the read closed");
    await waitUntil(() => env.service.readBudget.usedBytes() === 0, 5000, "its part of the budget back");

    // A write whose source fails midway: aborted, nothing stored.
    const source = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(randomBytes(2 * CHUNK_BYTES));
      },
      pull(controller) {
        controller.error(new Error("disk gone"));
      },
    });
    let opened = false;
    const watch = setInterval(() => opened ||= env.service.writes() > 0, 1);
    await assert.rejects(env.outputs.put("t/0", source, { attempt: "0" }), /disk gone/);
    clearInterval(watch);
    assert.ok(opened, "the write had begun on the manager");
    await waitUntil(() => env.service.writes() === 0, 5000, "the write aborted");
    assert.equal(await env.workspace.info("t/0"), null, "nothing stored");
  },
});
