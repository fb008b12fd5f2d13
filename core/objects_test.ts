import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { startTestNats } from "../tests/kit/mod.ts";
import { CHUNK_BYTES, digestHex, openBucket } from "./objects.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

function pattern(size: number, seed: number): Uint8Array {
  return new Uint8Array(size).map((_, i) => (i * 31 + seed) % 256);
}

Deno.test({
  name: "Bucket streams objects in and out in chunks, checks digests, renames and deletes",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bucket = await openBucket(nats.nc, "test-objects", { create: true });
    const data = pattern(3 * CHUNK_BYTES + 12345, 7);
    const info = await bucket.put("big", ReadableStream.from([data.subarray(0, 1000), data.subarray(1000)]), {
      kind: "test",
    });
    assert.equal(info.size, data.byteLength);
    assert.equal(info.chunks, 4);
    assert.equal(digestHex(info), createHash("sha256").update(data).digest("hex"));

    const read = (await bucket.read("big"))!;
    assert.equal(read.info.metadata?.kind, "test");
    assert.deepEqual(new Uint8Array(await new Response(read.body).arrayBuffer()), data);

    await bucket.put("small", ReadableStream.from([pattern(10, 1)]));
    await bucket.put("empty", ReadableStream.from([]));
    assert.deepEqual(
      new Uint8Array(await new Response((await bucket.read("small"))!.body).arrayBuffer()),
      pattern(10, 1),
    );
    assert.equal((await new Response((await bucket.read("empty"))!.body).arrayBuffer()).byteLength, 0);

    assert.equal(await bucket.rename("big", "renamed"), true);
    assert.equal(await bucket.read("big"), null);
    const renamed = (await bucket.info("renamed"))!;
    assert.equal(renamed.metadata?.kind, "test", "metadata survives a rename");
    assert.equal(await bucket.rename("small", "renamed"), false, "no rename onto a live object");
    assert.deepEqual(new Uint8Array(await new Response((await bucket.read("renamed"))!.body).arrayBuffer()), data);

    const before = await bucket.bytes();
    assert.equal(await bucket.delete("renamed"), true);
    assert.equal(await bucket.delete("renamed"), false);
    assert.ok((await bucket.bytes()) < before - data.byteLength / 2, "chunks purged");
    assert.deepEqual((await bucket.list()).map((i) => i.name).sort(), ["empty", "small"]);
  },
});

Deno.test({
  name: "Bucket.read() lets a reader stop early without leaking its consumer",
  ...opts,
  async fn() {
    await using nats = await startTestNats();
    const bucket = await openBucket(nats.nc, "test-cancel", { create: true });
    await bucket.put("x", ReadableStream.from([pattern(20 * CHUNK_BYTES, 3)]));
    const reader = (await bucket.read("x"))!.body.getReader();
    const first = await reader.read();
    assert.equal(first.value?.byteLength, CHUNK_BYTES);
    await reader.cancel();
    const { jetstreamManager } = await import("@nats-io/jetstream");
    const jsm = await jetstreamManager(nats.nc);
    const info = await jsm.streams.info("OBJ_test-cancel");
    assert.equal(info.state.consumer_count, 0);
  },
});
