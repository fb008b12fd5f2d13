/**
 * Test helpers: a real nats-server on a free port, a real manager, node
 * processes, zips made in memory. No mocks of NATS or Deno KV.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../core/nats_connect.ts";
import { join, resolve } from "node:path";
import { createLogger, type Logger, type LogLevel } from "../core/log.ts";
import { freePort, type NatsServer, startNatsServer } from "../core/nats_server.ts";
import { jetstreamManager } from "@nats-io/jetstream";
import { type Manager, type ManagerOptions, startManager } from "../manager/mod.ts";
import type { InstanceView, NodeRecord, TaskView } from "../core/schema.ts";
import { removeTree } from "../node/readonly.ts";

zip.configure({ useWebWorkers: false });

/** The repository root. */
export const ROOT = resolve(import.meta.dirname!, "..");

/** A logger for tests: quiet unless PARALLELIC_TEST_LOG names a level. */
export function testLogger(): Logger {
  const level = Deno.env.get("PARALLELIC_TEST_LOG") as LogLevel | undefined;
  return level ? createLogger({ level }) : createLogger({ level: "error", write: () => {} });
}

/** A temporary folder removed by `await using` (read-only data views in it included). */
export async function tempDir(prefix = "parallelic-test-"): Promise<{ path: string } & AsyncDisposable> {
  const path = await Deno.makeTempDir({ prefix });
  return { path, [Symbol.asyncDispose]: () => removeTree(path) };
}

/** A Deno KV in a temp folder, closed and removed by `await using`. */
export async function tempKv(): Promise<{ kv: Deno.Kv } & AsyncDisposable> {
  const dir = await tempDir("parallelic-kv-");
  const kv = await Deno.openKv(join(dir.path, "state.kv"));
  return {
    kv,
    async [Symbol.asyncDispose]() {
      kv.close();
      await dir[Symbol.asyncDispose]();
    },
  };
}

/**
 * The real Deno KV `kv` with some methods replaced, to inject a fault or
 * watch what is written; everything else is the real thing.
 */
export function kvWith(kv: Deno.Kv, overrides: { atomic?: () => Deno.AtomicOperation; get?: Deno.Kv["get"] }): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop) {
      const own = (overrides as Record<PropertyKey, unknown>)[prop];
      if (own !== undefined) return own;
      const value = Reflect.get(target, prop);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** The real Deno KV `kv`, noting in `atomics` the keys each atomic sets (its first part only with `head`). */
export function recordingAtomics(kv: Deno.Kv, atomics: string[][], head = false): Deno.Kv {
  return kvWith(kv, {
    atomic() {
      const op = kv.atomic();
      const keys: string[] = [];
      atomics.push(keys);
      const set = op.set.bind(op);
      op.set = (key, value, options) => {
        keys.push(head ? String(key[0]) : key.join("/"));
        return set(key, value, options);
      };
      return op;
    },
  });
}

/** A nats-server with JetStream in a temp folder, and a connection to it. */
export interface TestNats extends AsyncDisposable {
  server: NatsServer;
  nc: NatsConnection;
  dir: string;
}

/**
 * A connection with node `name`'s inbox: the manager's bus answers a request
 * on a node's subjects only into that node's inbox. Close it when done.
 */
export function connectAsNode(servers: string, name: string): Promise<NatsConnection> {
  return connect({ servers, inboxPrefix: `_INBOX_${name}`, reconnect: false });
}

/** Starts nats-server on a free port. */
export async function startTestNats(): Promise<TestNats> {
  const dir = await Deno.makeTempDir({ prefix: "parallelic-nats-" });
  const server = await startNatsServer({ storeDir: join(dir, "js"), port: 0 });
  const nc = await connect({ servers: server.url });
  return {
    server,
    nc,
    dir,
    async [Symbol.asyncDispose]() {
      await nc.close().catch(() => {});
      await server.stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** A manager for tests, with its API at hand. */
export interface TestManager extends AsyncDisposable {
  manager: Manager;
  token: string;
  dataDir: string;
  /** Calls the API with the admin token (or `token`). */
  api(path: string, init?: RequestInit & { token?: string | null }): Promise<Response>;
  /** Polls a task until it is final. */
  waitForTask(id: string, timeoutMs?: number): Promise<TaskView>;
  /** A NATS connection with the manager's own credentials (close it when done). */
  connectNats(): Promise<NatsConnection>;
}

/**
 * Join tokens of the test managers by NATS URL, so that
 * {@linkcode startNodeProcess} gives a node the join token of the manager
 * it joins without every test passing it.
 */
const joinTokens = new Map<string, string>();

/** The admin token every test manager uses. */
export const TEST_TOKEN = "test-admin-token-0123456789";

/** Starts a manager on free ports with an embedded NATS server. */
export async function startTestManager(options: Partial<ManagerOptions> = {}): Promise<TestManager> {
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "parallelic-mgr-" });
  const manager = await startManager({
    port: 0,
    natsPort: 0,
    localNode: false,
    token: TEST_TOKEN,
    heartbeatMs: 200,
    leaseMs: 1500,
    retryBackoffMs: 100,
    graceMs: 1000,
    log: testLogger(),
    ...options,
    dataDir,
  });
  if (manager.joinToken) joinTokens.set(manager.natsUrl, manager.joinToken);
  const api = (path: string, init: RequestInit & { token?: string | null } = {}) => {
    const headers = new Headers(init.headers);
    const token = init.token === undefined ? TEST_TOKEN : init.token;
    if (token) headers.set("authorization", `Bearer ${token}`);
    return fetch(`${manager.url}${path}`, { ...init, headers });
  };
  return {
    manager,
    token: TEST_TOKEN,
    dataDir,
    api,
    async waitForTask(id, timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const task = await (await api(`/api/v1/tasks/${id}`)).json() as TaskView;
        if (["succeeded", "failed", "cancelled"].includes(task.state)) return task;
        if (Date.now() > deadline) {
          throw new Error(`Task ${id} still ${task.state} after ${timeoutMs} ms: ${JSON.stringify(task.counts)}`);
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    connectNats: () =>
      connectNats({ servers: manager.natsUrl, name: "test", credentials: manager.natsCredentials, reconnect: false }),
    async [Symbol.asyncDispose]() {
      joinTokens.delete(manager.natsUrl);
      await manager.stop();
      if (!options.dataDir) await removeTree(dataDir);
    },
  };
}

/** A `deno run -A main.ts ...` child process, its output collected. */
export interface MainProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** Output (stdout and stderr) so far. */
  output(): string;
  /** Sends `signal` (unless it exited) and waits until it has exited. */
  kill(signal?: Deno.Signal): Promise<void>;
}

/**
 * Starts `deno run -A [denoFlags] main.ts ARGS` as a child process (a node,
 * or a manager of its own for benchmarks).
 */
export function startMainProcess(
  args: string[],
  options: { denoFlags?: string[]; env?: Record<string, string> } = {},
): MainProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...options.denoFlags ?? [], join(ROOT, "main.ts"), ...args],
    env: options.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let out = "";
  const decoder = new TextDecoder();
  const drain = (s: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const c of s) out += decoder.decode(c);
    })().catch(() => {});
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  let done = false;
  const kill = async (signal: Deno.Signal = "SIGTERM") => {
    if (!done) {
      try {
        child.kill(signal);
      } catch { /* exited */ }
    }
    await child.status;
    done = true;
    await drained;
  };
  return { child, output: () => out, kill, [Symbol.asyncDispose]: () => kill("SIGKILL") };
}

/** A compute node running as its own process (`deno run main.ts node`). */
export interface NodeProcess extends MainProcess {
  name: string;
}

/**
 * Starts `main.ts node` as a child process. It gets the join token of the
 * test manager at `natsUrl` in `PARALLELIC_JOIN_TOKEN` unless `env` sets it;
 * `denoFlags` go to `deno run` (say, `--cpu-prof`).
 */
export function startNodeProcess(
  natsUrl: string,
  name: string,
  workDir: string,
  extra: string[] = [],
  env: Record<string, string> = {},
  denoFlags: string[] = [],
): NodeProcess {
  const joinToken = joinTokens.get(natsUrl);
  const process = startMainProcess(
    ["node", `--nats=${natsUrl}`, `--name=${name}`, `--work-dir=${workDir}`, ...extra],
    { denoFlags, env: { ...(joinToken ? { PARALLELIC_JOIN_TOKEN: joinToken } : {}), ...env } },
  );
  return { name, ...process };
}

/** Waits until `fn` returns a truthy value. */
export async function waitUntil<T>(
  fn: () => T | Promise<T>,
  timeoutMs = 15_000,
  what = "condition",
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A call of the gateway's API (`TestManager.api`, `ManagerProcess.api`). */
export type Api = (path: string, init?: RequestInit) => Promise<Response>;

/** The manager's nodes; none while the API answers an error (during a NATS failover it answers 503 "try again"). */
export async function listNodes(api: Api): Promise<NodeRecord[]> {
  const res = await api("/api/v1/nodes");
  if (!res.ok) {
    await res.body?.cancel();
    return [];
  }
  return (await res.json() as { nodes: NodeRecord[] }).nodes;
}

/** A task's instances, through the API. */
export async function listInstances(api: Api, taskId: string): Promise<InstanceView[]> {
  return (await (await api(`/api/v1/tasks/${taskId}/instances`)).json() as { instances: InstanceView[] }).instances;
}

/** Waits until `want` nodes (a count, or these names) are ready; returns the node list then. */
export async function nodesReady(api: Api, want: number | string[], timeoutMs = 20_000): Promise<NodeRecord[]> {
  const ready = (nodes: NodeRecord[]) =>
    typeof want === "number"
      ? nodes.filter((n) => n.state === "ready").length >= want
      : want.every((name) => nodes.some((n) => n.name === name && n.state === "ready"));
  return await waitUntil(
    async () => {
      const nodes = await listNodes(api);
      return ready(nodes) ? nodes : null;
    },
    timeoutMs,
    typeof want === "number" ? `${want} nodes ready` : `nodes ${want.join(", ")} ready`,
  );
}

/** A file in a zip made by {@linkcode makeZip}. */
export type ZipFile = string | { content: string; mode?: number; symlink?: boolean };

/** Makes a zip in memory from `{ path: content }`. */
export async function makeZip(files: Record<string, ZipFile>): Promise<Uint8Array> {
  const writer = new zip.ZipWriter(new zip.Uint8ArrayWriter());
  for (const [path, file] of Object.entries(files)) {
    const f = typeof file === "string" ? { content: file } : file;
    const mode = f.symlink ? 0o120777 : 0o100000 | (f.mode ?? (path.endsWith(".sh") ? 0o755 : 0o644));
    await writer.add(path, new zip.TextReader(f.content), { unixMode: mode });
  }
  return await writer.close();
}

/** Runs `main.ts` with `args` and `env` (the CLI); returns its exit code and output. */
export async function runCli(
  target: Record<string, string> | TestManager,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  // A test manager, or the environment to run with.
  const env = "manager" in target && typeof target.manager === "object"
    ? { PARALLELIC_MANAGER: (target as TestManager).manager.url, PARALLELIC_TOKEN: TEST_TOKEN }
    : target as Record<string, string>;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "main.ts"), ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** Adds a user through the API; returns their token. */
export async function addApiUser(tm: TestManager, name: string, role = "submitter"): Promise<string> {
  const res = await tm.api("/api/v1/users", { method: "POST", body: JSON.stringify({ name, role }) });
  if (res.status !== 201) throw new Error(`adding user ${name}: ${res.status} ${await res.text()}`);
  return (await res.json()).token;
}

/** Submits zip bytes; returns the response. */
export function submitZip(tm: TestManager, bytes: Uint8Array, name = "test"): Promise<Response> {
  return tm.api(`/api/v1/tasks?name=${name}`, {
    method: "POST",
    headers: { "content-type": "application/zip" },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
}

/** A NATS cluster of `size` servers on loopback, with clustered JetStream. */
export interface TestCluster extends AsyncDisposable {
  servers: NatsServer[];
  /** Every client URL, comma-separated (what `--nats` takes). */
  urls: string;
  dir: string;
}

/** Starts a NATS cluster on free loopback ports and waits until JetStream has a leader. */
export async function startTestCluster(size = 3): Promise<TestCluster> {
  const dir = await Deno.makeTempDir({ prefix: "parallelic-cluster-" });
  const routePorts = Array.from({ length: size }, () => freePort());
  const servers = await Promise.all(routePorts.map((port, i) =>
    startNatsServer({
      storeDir: join(dir, `n${i}`),
      port: 0,
      cluster: {
        name: "parallelic-test",
        serverName: `n${i}`,
        port,
        routes: routePorts.filter((p) => p !== port).map((p) => `nats-route://127.0.0.1:${p}`),
      },
    })
  ));
  const urls = servers.map((s) => s.url).join(",");
  const nc = await connect({ servers: urls.split(",") });
  try {
    await waitUntil(
      async () => {
        try {
          await (await jetstreamManager(nc)).getAccountInfo();
          return true;
        } catch {
          return false;
        }
      },
      30_000,
      "a JetStream meta leader",
    );
  } finally {
    await nc.close();
  }
  return {
    servers,
    urls,
    dir,
    async [Symbol.asyncDispose]() {
      await Promise.all(servers.map((s) => s.stop()));
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/**
 * A manager run as its own process on a fixed port and data dir, so that a
 * test can kill it and start it again (fault, shutdown and backup tests).
 */
export interface ManagerProcess extends AsyncDisposable {
  /** The gateway's port. */
  readonly port: number;
  /** The running manager's pid (undefined while stopped). */
  readonly pid: number | undefined;
  /** Calls the API with the admin token. */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Uploads a zip; returns the new task's id. */
  submit(zip: Uint8Array): Promise<string>;
  /** Polls a task until it is final. */
  waitForTask(id: string, timeoutMs?: number): Promise<TaskView>;
  /** Starts the manager (again) and waits until its gateway answers. */
  start(): Promise<void>;
  /** Sends `signal` to the manager and waits for it to exit; returns how it exited. */
  stop(signal?: Deno.Signal): Promise<Deno.CommandStatus | null>;
}

/** Makes a {@linkcode ManagerProcess} (not started) with `flags` after `manager --data-dir --port`. */
export function managerProcess(dataDir: string, flags: string[]): ManagerProcess {
  const port = freePort();
  let child: Deno.ChildProcess | undefined;
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      headers: { ...init.headers, authorization: `Bearer ${TEST_TOKEN}` },
    });
  const stop = async (signal: Deno.Signal = "SIGTERM") => {
    if (!child) return null;
    try {
      child.kill(signal);
    } catch { /* exited */ }
    const status = await child.status;
    child = undefined;
    return status;
  };
  return {
    port,
    get pid() {
      return child?.pid;
    },
    api,
    async submit(zip) {
      const res = await api("/api/v1/tasks", {
        method: "POST",
        headers: { "content-type": "application/zip" },
        body: zip as Uint8Array<ArrayBuffer>,
      });
      if (res.status !== 201) throw new Error(`submit answered ${res.status}: ${await res.text()}`);
      return (await res.json()).id;
    },
    waitForTask: (id, timeoutMs = 60_000) =>
      waitUntil(
        async () => {
          const t = await (await api(`/api/v1/tasks/${id}`)).json() as TaskView;
          return ["succeeded", "failed", "cancelled"].includes(t.state) ? t : null;
        },
        timeoutMs,
        `task ${id} to end`,
      ),
    async start() {
      child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          join(ROOT, "main.ts"),
          "manager",
          `--data-dir=${dataDir}`,
          `--port=${port}`,
          "--no-local-node",
          "--log-level=warn",
          ...flags,
        ],
        env: { PARALLELIC_TOKEN: TEST_TOKEN },
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitUntil(() => api("/healthz").then((r) => r.ok, () => false), 30_000, "the manager to answer");
    },
    stop,
    [Symbol.asyncDispose]: async () => void await stop("SIGTERM"),
  };
}
