import assert from "node:assert/strict";
import { createBus } from "../core/bus.ts";
import { nodeInboxPrefix } from "../core/nats_auth.ts";
import { CHUNK_BYTES, openBucket } from "../core/objects.ts";
import { outputObject, WORKSPACE_BUCKET } from "../core/schema.ts";
import { remoteBucket } from "../node/remote_bucket.ts";
import { connectAsNode, startTestNats, testLogger, waitUntil } from "../tests/kit/mod.ts";
import { type AssignmentView, createObjectService, type HeldTask, OBJECT_BUCKETS } from "./object_service.ts";

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
  const held = [...contents.keys()].map((digest) => ({
    taskId: "t",
    digest,
    instances: 1,
    dataVersions: [],
    upstream: [],
  }));
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

Deno.test({
  name: "object service: a node reads an upstream's outputs only while it holds a task that waits for it",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const controller = new AbortController();
    const bus = createBus(nats.nc, testLogger());
    // What node n1 holds: instance or finalize attempts by task, and the tasks held.
    const held = new Map<string, { task: HeldTask; attempts: Map<number, number> }>();
    const assignments: AssignmentView = {
      attemptOf: (node, taskId, index) => node === "n1" ? held.get(taskId)?.attempts.get(index) ?? null : null,
      tasksOf: (node) => node === "n1" ? [...held.values()].map((h) => h.task) : [],
    };
    const store = await openBucket(nats.nc, WORKSPACE_BUCKET, { create: true });
    const bucket = (name: string) => () => openBucket(nats.nc, name);
    createObjectService({
      bus,
      log: testLogger(),
      assignments,
      buckets: {
        packages: bucket(OBJECT_BUCKETS.packages),
        data: bucket(OBJECT_BUCKETS.data),
        workspace: bucket(WORKSPACE_BUCKET),
      },
    }, { signal: controller.signal });
    const up = "t00000000000000up";
    const other = "t0000000000other";
    for (const [task, which] of [[up, 0], [up, 1], [up, "finalize"], [other, 0]] as const) {
      await store.put(outputObject(task, which), new Blob([`${task}/${which}`]).stream());
    }
    // The node's own connection, its requests answered into its own inbox.
    const nodeNc = await connectAsNode(nats.server.url, "n1");
    const nodeBus = createBus(nodeNc, testLogger(), { inbox: nodeInboxPrefix("n1") });
    const workspace = remoteBucket(nodeBus, "n1", "workspace");
    const text = async (object: string) => await new Response((await workspace.read(object))!.body).text();
    const forbidden = /may not reach object/;
    const dependent = (upstream: string[]): HeldTask => ({
      taskId: "t0000000000000dep",
      digest: `sha256-${"0".repeat(64)}`,
      instances: 4,
      dataVersions: [],
      upstream,
    });
    try {
      // Before any assignment: nothing.
      await assert.rejects(workspace.read(outputObject(up, 0)), forbidden);

      // An instance of the dependent held: every output of the upstream (instances and finalize), read only.
      held.set("dep", { task: dependent([up]), attempts: new Map([[2, 0]]) });
      assert.equal(await text(outputObject(up, 0)), `${up}/0`);
      assert.equal(await text(outputObject(up, 1)), `${up}/1`);
      assert.equal(await text(outputObject(up, "finalize")), `${up}/finalize`);
      assert.equal((await workspace.info(outputObject(up, 1)))?.size, `${up}/1`.length);
      await assert.rejects(workspace.read(outputObject(other, 0)), forbidden, "a task it does not wait for");
      await assert.rejects(workspace.read(`${up}/0/x`), forbidden, "not an outputs object");
      await assert.rejects(
        workspace.put(outputObject(up, 0), new Blob(["forged"]).stream(), { attempt: "0" }),
        forbidden,
        "an upstream's outputs are never written",
      );
      await assert.rejects(workspace.delete(outputObject(up, "finalize")), forbidden);

      // Only the dependent's finalize held: the same.
      held.set("dep", { task: dependent([up]), attempts: new Map([[4, 1]]) });
      assert.equal(await text(outputObject(up, "finalize")), `${up}/finalize`);

      // The assignment ended: refused again.
      held.clear();
      await assert.rejects(workspace.read(outputObject(up, 0)), forbidden);
      await assert.rejects(workspace.read(outputObject(up, "finalize")), forbidden);
    } finally {
      controller.abort();
      await nodeNc.close();
    }
  },
});
