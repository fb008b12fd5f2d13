import assert from "node:assert/strict";
import { join } from "node:path";
import { connect } from "@nats-io/transport-node";
import { createDataService } from "../services/data/mod.ts";
import { createWorkspaceService } from "../services/workspace.ts";
import { Client } from "../cli/client.ts";
import { createBus, unwrap } from "../core/bus.ts";
import { systemClock } from "../core/clock.ts";
import { AuthError, ERROR_CLASSES, errorClassOfStatus, ParallelicError, RateLimitError } from "../core/errors.ts";
import { nodesDrain } from "../core/schema.ts";
import { createGateway } from "../gateway/app.ts";
import { addToken } from "../gateway/auth.ts";
import { startTestNats, testLogger } from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

/** One error of each registered class (and AuthError's `forbidden`), thrown by a node name's handler. */
const CASES = [
  ...Object.entries(ERROR_CLASSES).map(([name, Class]) => ({
    node: `n-${name}`,
    error: new Class(`no ${name} here`, { code: `code_of_${name}`, retryAfterMs: 3000 }),
  })),
  { node: "n-forbidden", error: new AuthError("not yours", { code: "forbidden" }) },
];

/** A NATS server whose `parallelic.nodes.drain` throws, for node `n-<Class>`, the error of that case. */
async function throwingServer() {
  const nats = await startTestNats();
  const log = testLogger();
  const serving = createBus(nats.nc, log);
  serving.serve(nodesDrain, (req) => {
    const found = CASES.find((c) => c.node === req.name);
    throw found?.error ?? new Error(`no case for ${req.name}`);
  });
  await nats.nc.flush();
  // A second connection, so every request crosses NATS rather than being answered in-process.
  const nc = await connect({ servers: nats.server.url });
  const bus = createBus(nc, log);
  return {
    nats,
    bus,
    log,
    async [Symbol.asyncDispose]() {
      await nc.close();
      await nats[Symbol.asyncDispose]();
    },
  };
}

Deno.test("every registered error class maps its statuses back to itself", () => {
  for (const [name, Class] of Object.entries(ERROR_CLASSES)) {
    const error = new Class("x", { retryAfterMs: 1 });
    assert.ok(error instanceof ParallelicError, name);
    assert.equal(error.name, name, "the name the bus sends it by");
    assert.ok(Class.statuses.includes(error.status), `${name}'s status ${error.status} is one of its statuses`);
    for (const status of Class.statuses) assert.equal(errorClassOfStatus(status), Class, `status ${status}`);
  }
  assert.equal(new AuthError("x", { code: "forbidden" }).status, 403);
  assert.equal(errorClassOfStatus(500), undefined);
});

Deno.test({
  name: "every registered error crosses the bus as its own class, code, message (and wait)",
  ...opts,
  async fn() {
    await using server = await throwingServer();
    for (const { node, error } of CASES) {
      const reply = await server.bus.request(nodesDrain, { name: node, drain: true });
      assert.throws(() => unwrap(reply), (e: Error) => {
        assert.equal(e.constructor, error.constructor, `${error.name} comes back as ${e.name}`);
        assert.equal((e as ParallelicError).code, error.code);
        assert.equal(e.message, error.message);
        if (error instanceof RateLimitError) assert.equal((e as RateLimitError).retryAfterMs, error.retryAfterMs);
        return true;
      });
    }
  },
});

Deno.test({
  name: "every registered error is answered with its HTTP status, and the CLI throws it again as its class",
  ...opts,
  async fn() {
    await using server = await throwingServer();
    const { nats, bus, log } = server;
    const kv = await Deno.openKv(join(nats.dir, "state.kv"));
    const abort = new AbortController();
    await addToken(kv, "admin-token", "admin", "admin");
    const workspace = await createWorkspaceService({ nc: nats.nc, kv, log });
    const data = await createDataService({ nc: nats.nc, kv, clock: systemClock, log });
    const app = createGateway({ bus, kv, workspace, data, log }, { signal: abort.signal });
    const http = Deno.serve({ port: 0, hostname: "127.0.0.1", onListen() {} }, app.fetch);
    try {
      const client = new Client({ manager: `http://127.0.0.1:${http.addr.port}`, token: "admin-token" });
      for (const { node, error } of CASES) {
        const res = await app.request(`/api/v1/nodes/${node}/drain`, {
          method: "POST",
          headers: { authorization: "Bearer admin-token" },
        });
        assert.equal(res.status, error.status, `${error.name} (${error.code})`);
        assert.deepEqual(await res.json(), { error: { code: error.code, message: error.message } });
        await assert.rejects(client.fetch(`/api/v1/nodes/${node}/drain`, { method: "POST" }), (e: Error) => {
          assert.equal(e.constructor, error.constructor, `${error.name} comes back as ${e.name}`);
          assert.equal((e as ParallelicError).code, error.code);
          assert.ok(e.message.startsWith(error.message), e.message);
          if (error instanceof RateLimitError) assert.equal((e as RateLimitError).retryAfterMs, error.retryAfterMs);
          return true;
        });
      }
    } finally {
      abort.abort();
      await http.shutdown();
      kv.close();
    }
  },
});
