/**
 * TLS end to end: the gateway over HTTPS (--tls-cert/--tls-key), the
 * embedded NATS server over TLS (--nats-tls-cert/--nats-tls-key), and the
 * manager, a node process and the CLI trusting a private CA.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  makeCertificates,
  makeZip,
  runCli,
  startNodeProcess,
  startTestManager,
  tempDir,
  TEST_TOKEN,
  waitUntil,
} from "./kit/mod.ts";

const opts = { sanitizeOps: false, sanitizeResources: false };

Deno.test({
  name: "the gateway speaks HTTPS and NATS speaks TLS; manager, node and CLI trust a private CA",
  ...opts,
  async fn() {
    await using certs = await tempDir();
    const c = await makeCertificates(certs.path);
    const pair = { certFile: c.cert, keyFile: c.key };
    await using tm = await startTestManager({
      gatewayTls: pair,
      natsServerTls: pair,
      natsTls: { caFile: c.ca },
      localNode: false,
    });
    assert.match(tm.manager.url, /^https:\/\//);
    const client = Deno.createHttpClient({ caCerts: [await Deno.readTextFile(c.ca)] });
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${tm.manager.url}${path}`, {
        ...init,
        client,
        headers: { authorization: `Bearer ${TEST_TOKEN}`, ...init.headers },
      });
    assert.equal((await api("/healthz")).status, 200);
    await assert.rejects(fetch(`${tm.manager.url}/healthz`), "an unknown CA is not trusted");
    await assert.rejects(fetch(tm.manager.url.replace("https:", "http:") + "/healthz"), "no plain HTTP");

    await using work = await tempDir();
    await using node = startNodeProcess(tm.manager.natsUrl, "tls-node", join(work.path, "n"), [`--nats-ca=${c.ca}`]);
    const plain = startNodeProcess(tm.manager.natsUrl, "plain-node", join(work.path, "p"));
    await waitUntil(() => /node:registered/.test(node.output()), 20_000, "the TLS node");
    const zip = await makeZip({
      "task.toml": `[task]\nentrypoint = "run.sh"\n`,
      "run.sh": "#!/bin/sh\necho over tls\n",
    });
    const res = await api("/api/v1/tasks", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: zip as Uint8Array<ArrayBuffer>,
    });
    assert.equal(res.status, 201);
    const id = (await res.json()).id;
    await waitUntil(
      async () => (await (await api(`/api/v1/tasks/${id}`)).json()).state === "succeeded",
      20_000,
      "the task",
    );
    assert.match(await (await api(`/api/v1/tasks/${id}/instances/0/logs`)).text(), /over tls/);

    const cli = await runCli(
      { PARALLELIC_MANAGER: tm.manager.url, PARALLELIC_TOKEN: TEST_TOKEN, PARALLELIC_CA_FILE: c.ca },
      "nodes",
    );
    assert.equal(cli.code, 0, cli.stderr);
    assert.match(cli.stdout, /tls-node\s+ready/);
    // A node without the CA never gets on the bus.
    assert.doesNotMatch(plain.output(), /node:registered/);
    await plain.kill();
    client.close();
  },
});
