import assert from "node:assert/strict";
import { makeZip, startTestManager, submitZip } from "../tests/kit/mod.ts";
import type { LogChunk } from "./logs.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "a log reads per attempt, as text or as chunks tagged with stream and time, and resumes after a sequence",
  ...opts,
  async fn() {
    await using tm = await startTestManager({ localNode: true, slots: 1 });
    const zip = await makeZip({
      "task.toml": `[task]\nname = "retried"\nentrypoint = "run.sh"\n[limits]\nretries = 1\n`,
      "run.sh":
        `#!/bin/sh\necho "out of attempt $PARALLELIC_ATTEMPT"\necho "err of attempt $PARALLELIC_ATTEMPT" >&2\n` +
        `printf 'caf\\303\\251\\n'\n[ "$PARALLELIC_ATTEMPT" -ge 1 ]\n`,
    });
    const res = await submitZip(tm, zip, "retried");
    assert.equal(res.status, 201, await res.clone().text());
    const { id } = await res.json();
    assert.equal((await tm.waitForTask(id)).state, "succeeded");
    const logs = `/api/v1/tasks/${id}/instances/0/logs`;

    const all = await (await tm.api(logs)).text();
    assert.match(all, /out of attempt 0/);
    assert.match(all, /out of attempt 1/);
    const second = await (await tm.api(`${logs}?attempt=1`)).text();
    assert.doesNotMatch(second, /attempt 0/);
    assert.match(second, /err of attempt 1/);

    const res2 = await tm.api(`${logs}?format=ndjson&attempt=1`);
    assert.equal(res2.headers.get("content-type"), "application/x-ndjson");
    const chunks: LogChunk[] = (await res2.text()).trim().split("\n").map((l) => JSON.parse(l));
    assert.ok(chunks.every((c) => c.attempt === 1));
    const text = (stream: string) => chunks.filter((c) => c.stream === stream).map((c) => c.text).join("");
    assert.equal(text("stdout"), "out of attempt 1\ncafé\n");
    assert.equal(text("stderr"), "err of attempt 1\n");
    assert.ok(chunks.every((c) => Math.abs(c.at - Date.now()) < 60_000), "stored a moment ago");
    const seqs = chunks.map((c) => c.seq);
    assert.deepEqual(seqs, [...seqs].sort((a, b) => a - b));

    const rest: LogChunk[] = (await (await tm.api(`${logs}?format=ndjson&attempt=1&after=${seqs[0]}`)).text())
      .trim().split("\n").map((l) => JSON.parse(l));
    assert.deepEqual(rest.map((c) => c.seq), seqs.slice(1));

    const bad = await tm.api(`${logs}?format=html`);
    assert.equal(bad.status, 400);
    assert.match((await bad.json()).error.message, /'format' = 'html': give text or ndjson/);
  },
});
