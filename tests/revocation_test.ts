/**
 * A token that is rotated or whose user is removed stops working on the
 * streams it already opened: live event streams and log follows end, over a
 * real connection, while the streams of other users stay open.
 */
import assert from "node:assert/strict";
import { addApiUser, makeZip, startTestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** Reads a stream until it ends; returns what came and how long it took after `since`. */
async function drain(reader: ReadableStreamDefaultReader<Uint8Array>, since: () => number) {
  let text = "";
  for (;;) {
    const next = await reader.read();
    if (next.done) return { text, afterMs: Date.now() - since() };
    text += new TextDecoder().decode(next.value);
  }
}

/** Reads until `pattern` has come. */
async function readUntil(reader: ReadableStreamDefaultReader<Uint8Array>, pattern: RegExp): Promise<string> {
  let text = "";
  while (!pattern.test(text)) {
    const next = await reader.read();
    assert.ok(!next.done, `the stream ended before ${pattern}: ${text}`);
    text += new TextDecoder().decode(next.value);
  }
  return text;
}

Deno.test({
  name: "a rotated token's event stream and a removed user's log follow end; other users' streams go on",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const alice = await addApiUser(tm, "alice");
    const bob = await addApiUser(tm, "bob");
    const open = async (path: string, token: string) => {
      const res = await tm.api(path, { token });
      assert.equal(res.status, 200, path);
      return res.body!.getReader();
    };
    const aliceEvents = await open("/api/v1/events", alice);
    const bobEvents = await open("/api/v1/events", bob);
    await readUntil(aliceEvents, /event: ready/);
    await readUntil(bobEvents, /event: ready/);

    // Bob follows the log of his task's instance, which no node runs: the follow would stay open for ever.
    const zip = await makeZip({ "task.toml": `[task]\nentrypoint = "run.sh"\n`, "run.sh": "#!/bin/sh\necho hi\n" });
    const submitted = await tm.api("/api/v1/tasks?name=follow", {
      method: "POST",
      token: bob,
      headers: { "content-type": "application/zip" },
      body: zip as Uint8Array<ArrayBuffer>,
    });
    assert.equal(submitted.status, 201);
    const { id } = await submitted.json();
    const bobLog = await open(`/api/v1/tasks/${id}/instances/0/logs?follow=1`, bob);

    let rotatedAt = 0;
    const aliceEnded = drain(aliceEvents, () => rotatedAt);
    rotatedAt = Date.now();
    assert.equal((await tm.api("/api/v1/users/alice/token", { method: "POST" })).status, 200);
    const alicesEnd = await aliceEnded;
    console.log(`alice's event stream ended ${alicesEnd.afterMs} ms after her token was rotated`);

    // Bob's streams are untouched: his event stream still carries his task's events.
    assert.equal((await tm.api(`/api/v1/tasks/${id}/cancel`, { method: "POST", token: bob })).status, 200);
    await readUntil(bobEvents, new RegExp(`event: task\ndata: .*"${id}"`));

    let removedAt = 0;
    const bobLogEnded = drain(bobLog, () => removedAt);
    const bobEventsEnded = drain(bobEvents, () => removedAt);
    removedAt = Date.now();
    assert.equal((await tm.api("/api/v1/users/bob", { method: "DELETE" })).status, 200);
    const [logEnd, eventsEnd] = await Promise.all([bobLogEnded, bobEventsEnded]);
    console.log(`bob's log follow and event stream ended ${logEnd.afterMs} and ${eventsEnd.afterMs} ms after removal`);
    // And the old tokens open nothing new.
    assert.equal((await tm.api("/api/v1/events", { token: alice })).status, 401);
    assert.equal((await tm.api(`/api/v1/tasks/${id}/instances/0/logs?follow=1`, { token: bob })).status, 401);
  },
});

Deno.test({
  name: "a token revoked by another process writing the same Deno KV ends its open streams too",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const carol = await addApiUser(tm, "carol");
    const res = await tm.api("/api/v1/events", { token: carol });
    const reader = res.body!.getReader();
    await readUntil(reader, /event: ready/);
    // Another manager process (or `parallelic` on the data dir) changes the token behind this gateway's cache.
    const kv = await Deno.openKv(`${tm.dataDir}/state.kv`);
    try {
      const { rotateToken } = await import("../gateway/auth.ts");
      await rotateToken(kv, "carol");
    } finally {
      kv.close();
    }
    const end = await drain(reader, () => 0);
    assert.doesNotMatch(end.text, /event: task/);
  },
});
