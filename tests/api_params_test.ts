/**
 * Path and query parameters are read strictly: node names that no node can
 * have, instance indexes and numbers that are not canonical decimal, and
 * yes/no flags with another word are refused with a 400 (or 404) naming the
 * parameter, never a 500 and never read as something else.
 */
import assert from "node:assert/strict";
import { makeZip, startTestManager } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "bad node names, instance indexes and numbers in paths and queries answer 400/404 saying what is wrong",
  ...opts,
  async fn() {
    await using tm = await startTestManager();
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 3\n[finalize]\nentrypoint = "run.sh"\n`,
      "run.sh": "#!/bin/sh\necho hi\n",
    });
    const submitted = await tm.api("/api/v1/tasks?name=params", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: zip as Uint8Array<ArrayBuffer>,
    });
    const { id: task } = await submitted.json();
    const cases: [string, string, number, string, RegExp][] = [
      ["POST", "/api/v1/nodes/bad.name/drain", 400, "invalid_node_name", /node name 'bad.name'.*letters, digits/],
      ["POST", "/api/v1/nodes/a%20b/resume", 400, "invalid_node_name", /node name 'a b'/],
      ["POST", "/api/v1/nodes/..%2Fn1/drain", 400, "invalid_node_name", /node name '..\/n1'/],
      ["POST", "/api/v1/nodes/nowhere/drain", 404, "node_not_found", /nowhere/],
      ["POST", "/api/v1/nodes/bad.name/forget", 400, "invalid_node_name", /bad.name/],
      ...["0x1", "1.0", "+1", "01", "1e0", "-1", " 1"].map((raw): [string, string, number, string, RegExp] => [
        "GET",
        `/api/v1/tasks/${task}/instances/${encodeURIComponent(raw)}`,
        400,
        "invalid_parameter",
        /instance index .*: give a whole number in decimal/,
      ]),
      ["GET", `/api/v1/tasks/${task}/instances/3`, 404, "instance_not_found", /instances 0 to 2/],
      ["GET", `/api/v1/tasks/${task}/instances/1/logs?follow=maybe`, 400, "invalid_parameter", /'follow' = 'maybe'/],
      ["GET", `/api/v1/tasks/${task}/explain?instance=0x1`, 400, "invalid_parameter", /'0x1'/],
      ["GET", `/api/v1/tasks/${task}/workspace.zip?instance=1.0`, 400, "invalid_parameter", /'1.0'/],
      ["GET", `/api/v1/tasks/${task}/instances?from=1e3`, 400, "invalid_parameter", /'from' = '1e3'/],
      ["GET", `/api/v1/tasks/${task}/states?limit=-5`, 400, "invalid_parameter", /'limit' = '-5'/],
      ["GET", "/api/v1/tasks?limit=0x10", 400, "invalid_parameter", /'limit' = '0x10'/],
      ["GET", "/api/v1/audit?before=1.5e12", 400, "invalid_parameter", /'before' = '1.5e12'/],
      ["GET", "/api/v1/events?topics=tasks,secrets", 400, "invalid_parameter", /'secrets' is not a topic/],
    ];
    for (const [method, path, status, code, message] of cases) {
      const res = await tm.api(path, { method });
      const body = await res.json();
      assert.equal(res.status, status, `${method} ${path}: ${JSON.stringify(body)}`);
      assert.equal(body.error.code, code, `${method} ${path}: ${body.error.message}`);
      assert.match(body.error.message, message, `${method} ${path}`);
    }
    // A page past the last instance is empty.
    const past = await (await tm.api(`/api/v1/tasks/${task}/instances?from=100`)).json();
    assert.deepEqual([past.instances, past.from, past.total], [[], 3, 3]);
    const pastStates = await (await tm.api(`/api/v1/tasks/${task}/states?from=100`)).json();
    assert.deepEqual([pastStates.states, pastStates.total], ["", 3]);
    // The canonical forms still work.
    assert.equal((await tm.api(`/api/v1/tasks/${task}/instances/1`)).status, 200);
    assert.equal((await (await tm.api(`/api/v1/tasks/${task}/instances/finalize`)).json()).index, 3);
    assert.equal((await (await tm.api(`/api/v1/tasks/${task}/instances?from=1&limit=1`)).json()).instances[0].index, 1);
  },
});
