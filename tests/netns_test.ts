/**
 * Separate hosts on one machine: network namespaces joined by a bridge, each
 * with its own address. Three NATS servers (a cluster with replicated
 * JetStream), the manager and two nodes each run in their own namespace. In
 * the middle of a 200-instance task one NATS server is killed and one node is
 * cut off the network for longer than its lease. All traffic stays inside the
 * test's own namespaces. Runs only as root with iproute2.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import type { TaskView } from "../core/schema.ts";
import { listInstances, listNodes, makeZip, ROOT, tempDir, TEST_TOKEN, waitUntil } from "./kit/mod.ts";

const isRoot = Deno.uid?.() === 0;
const hasIp = await new Deno.Command("ip", { args: ["-V"], stdout: "null", stderr: "null" }).output()
  .then((o) => o.success, () => false);
const skip = !isRoot ? "not running as root" : !hasIp ? "iproute2's 'ip' is missing" : null;
if (skip) console.log(`network namespace test skipped: ${skip}`);

async function sh(cmd: string[], check = true): Promise<string> {
  const out = await new Deno.Command(cmd[0], { args: cmd.slice(1), stdout: "piped", stderr: "piped" }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (check && !out.success) throw new Error(`${cmd.join(" ")} failed: ${text}`);
  return text;
}

/** A little network: a bridge in its own namespace, and hosts plugged into it. */
class TestNetwork implements AsyncDisposable {
  readonly id = crypto.randomUUID().slice(0, 4);
  readonly subnet = `10.213.${Math.floor(Math.random() * 250) + 1}`;
  readonly namespaces: string[] = [];
  readonly sw = `plc${this.id}sw`;
  readonly tester = `plc${this.id}t`;

  async init(): Promise<void> {
    await sh(["ip", "netns", "add", this.sw]);
    this.namespaces.push(this.sw);
    await sh(["ip", "-n", this.sw, "link", "add", "br0", "type", "bridge"]);
    await sh(["ip", "-n", this.sw, "link", "set", "br0", "up"]);
    // The test itself reaches the network from the root namespace through one veth.
    await sh(["ip", "link", "add", this.tester, "type", "veth", "peer", "name", `plc${this.id}tp`]);
    await sh(["ip", "link", "set", `plc${this.id}tp`, "netns", this.sw]);
    await sh(["ip", "-n", this.sw, "link", "set", `plc${this.id}tp`, "master", "br0", "up"]);
    await sh(["ip", "addr", "add", `${this.subnet}.254/24`, "dev", this.tester]);
    await sh(["ip", "link", "set", this.tester, "up"]);
  }

  /** Adds a host with address `.n`; returns its namespace. */
  async host(name: string, n: number): Promise<string> {
    const ns = `plc${this.id}${name}`;
    const veth = `plc${this.id}${name}v`;
    await sh(["ip", "netns", "add", ns]);
    this.namespaces.push(ns);
    await sh(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns]);
    await sh(["ip", "link", "set", veth, "netns", this.sw]);
    await sh(["ip", "-n", this.sw, "link", "set", veth, "master", "br0", "up"]);
    await sh(["ip", "-n", ns, "addr", "add", `${this.subnet}.${n}/24`, "dev", "eth0"]);
    await sh(["ip", "-n", ns, "link", "set", "eth0", "up"]);
    await sh(["ip", "-n", ns, "link", "set", "lo", "up"]);
    return ns;
  }

  /** Output of the processes started with {@linkcode spawn}, by namespace, for failure reports. */
  readonly output = new Map<string, string>();

  /** Runs a command inside a host's namespace. */
  spawn(ns: string, args: string[], env: Record<string, string> = {}): Deno.ChildProcess {
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, ...args],
      env,
      stdout: "piped",
      stderr: "piped",
    })
      .spawn();
    const keep = async (stream: ReadableStream<Uint8Array>) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
        this.output.set(ns, ((this.output.get(ns) ?? "") + chunk).slice(-4000));
      }
    };
    keep(child.stdout).catch(() => {});
    keep(child.stderr).catch(() => {});
    return child;
  }

  async link(ns: string, up: boolean): Promise<void> {
    await sh(["ip", "-n", ns, "link", "set", "eth0", up ? "up" : "down"]);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await sh(["ip", "link", "del", this.tester], false);
    for (const ns of this.namespaces.reverse()) await sh(["ip", "netns", "del", ns], false);
  }
}

Deno.test({
  name: "separate hosts: a 3-server NATS cluster loses a server and a node is cut off past its lease; nothing lost",
  ignore: skip !== null,
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    await using work = await tempDir();
    await using net = new TestNetwork();
    await net.init();
    const ip = (n: number) => `${net.subnet}.${n}`;
    const children: Deno.ChildProcess[] = [];
    try {
      // Three NATS servers, a cluster with clustered JetStream.
      const natsNs: string[] = [];
      for (let i = 0; i < 3; i++) {
        const ns = await net.host(`n${i}`, i + 1);
        natsNs.push(ns);
        const dir = join(work.path, `n${i}`);
        await Deno.mkdir(dir);
        const routes = [0, 1, 2].filter((j) => j !== i).map((j) => `"nats-route://${ip(j + 1)}:6222"`);
        await Deno.writeTextFile(
          join(dir, "nats.conf"),
          `listen: "${ip(i + 1)}:4222"\nserver_name: n${i}\njetstream { store_dir: "${dir}" }\n` +
            `cluster { name: parallelic, listen: "${ip(i + 1)}:6222", routes: [${routes.join(", ")}] }\n`,
        );
        children.push(net.spawn(ns, ["nats-server", "-c", join(dir, "nats.conf")]));
      }
      const urls = [1, 2, 3].map((n) => `nats://${ip(n)}:4222`).join(",");
      const mgrNs = await net.host("mgr", 10);
      const manager = net.spawn(mgrNs, [
        Deno.execPath(),
        "run",
        "-A",
        join(ROOT, "main.ts"),
        "manager",
        `--nats=${urls}`,
        "--replicas=3",
        `--host=${ip(10)}`,
        "--port=8080",
        "--no-local-node",
        "--lease-ms=3000",
        "--heartbeat-ms=300",
        `--data-dir=${join(work.path, "mgr")}`,
      ], { PARALLELIC_TOKEN: TEST_TOKEN });
      children.push(manager);
      const nodeNs: Record<string, string> = {};
      for (const [name, n] of [["a", 21], ["b", 22]] as const) {
        nodeNs[name] = await net.host(name, n);
        children.push(net.spawn(nodeNs[name], [
          Deno.execPath(),
          "run",
          "-A",
          join(ROOT, "main.ts"),
          "node",
          `--nats=${urls}`,
          `--name=${name}`,
          "--slots=4",
          `--work-dir=${join(work.path, name)}`,
        ]));
      }
      const base = `http://${ip(10)}:8080`;
      const api = (path: string, init: RequestInit = {}) =>
        fetch(`${base}${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${TEST_TOKEN}` } });
      await waitUntil(() => fetch(`${base}/healthz`).then((r) => r.ok, () => false), 60_000, "the manager");
      // While a NATS server is down the API may answer 503 ("try again"): that reads as no nodes yet.
      const nodes = () => listNodes(api);
      await waitUntil(async () => (await nodes()).filter((n) => n.state === "ready").length === 2, 30_000, "nodes");

      const zip = await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 200\n`,
        "run.sh": `#!/bin/sh\nsleep 0.2\necho "out $PARALLELIC_INSTANCE"\n`,
      });
      const res = await api("/api/v1/tasks", {
        method: "POST",
        headers: { "content-type": "application/zip" },
        body: zip as Uint8Array<ArrayBuffer>,
      });
      assert.equal(res.status, 201);
      const { id } = await res.json();
      const task = async () => await (await api(`/api/v1/tasks/${id}`)).json() as TaskView;
      await waitUntil(async () => (await task()).counts.succeeded >= 30, 60_000, "progress");
      // (a) one NATS server dies; (b) node b is cut off for longer than its lease.
      children[2].kill("SIGKILL");
      await net.link(nodeNs.b, false);
      await waitUntil(async () => (await nodes()).find((n) => n.name === "b")?.state === "lost", 30_000, "b lost");
      await new Promise((r) => setTimeout(r, 1000));
      await net.link(nodeNs.b, true);
      const done = await waitUntil(
        async () => {
          const t = await task().catch(() => null);
          return t && ["succeeded", "failed", "cancelled"].includes(t.state) ? t : null;
        },
        180_000,
        "the task to end",
      );
      assert.equal(done.state, "succeeded");
      const list = () => listInstances(api, id);
      const instances = await list();
      for (const i of instances) {
        assert.equal(i.state, "succeeded");
        assert.equal(i.history.filter((h) => h.exitCode !== null).length, 1, `instance ${i.index}: one result`);
      }
      const moved = instances.filter((i) => i.history.some((h) => h.node === "b" && /node b lost/.test(h.error ?? "")));
      assert.ok(moved.length > 0, "the cut-off node's instances were requeued");
      // b rejoins and takes work again; its late reports changed nothing.
      await waitUntil(async () => (await nodes()).find((n) => n.name === "b")?.state === "ready", 60_000, "b back");
      assert.deepEqual(await list(), instances, "late reports of the cut-off node were ignored");
      const small = await makeZip({
        "task.toml": `[task]\nentrypoint = "run.sh"\ninstances = 40\n`,
        "run.sh": `#!/bin/sh\nsleep 0.5\necho "again $PARALLELIC_INSTANCE"\n`,
      });
      // With the other node drained, the work can only go to the one that rejoined.
      assert.equal((await api("/api/v1/nodes/a/drain", { method: "POST" })).status, 200);
      // A NATS server is still down: storing the package may take a stream leader election, answered with a 503
      // "try again", which a client does.
      const again = await waitUntil(
        async () => {
          const res = await api("/api/v1/tasks", {
            method: "POST",
            headers: { "content-type": "application/zip" },
            body: small as Uint8Array<ArrayBuffer>,
          });
          if (res.status === 503) return void await res.body?.cancel();
          assert.equal(res.status, 201, await res.clone().text());
          return await res.json() as { id: string };
        },
        60_000,
        "the second task accepted",
      );
      let last: TaskView | undefined;
      await (waitUntil(
        async () => {
          last = await (await api(`/api/v1/tasks/${again.id}`)).json() as TaskView;
          return last.state === "succeeded";
        },
        120_000,
        "the second task",
      )).catch((e) => {
        throw new Error(`${e.message}: ${JSON.stringify(last?.counts)}`);
      });
      const second = await listInstances(api, again.id);
      assert.ok(second.some((i) => i.node === "b"), "the rejoined node took work again");
    } catch (e) {
      for (const [ns, text] of net.output) console.error(`--- ${ns}\n${text}`);
      throw e;
    } finally {
      for (const c of children) {
        try {
          c.kill("SIGKILL");
        } catch { /* gone */ }
        await c.status;
      }
    }
  },
});
