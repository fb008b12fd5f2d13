/**
 * Test helpers: a real nats-server on a free port, a real manager, node
 * processes, zips made in memory. No mocks of NATS or Deno KV.
 *
 * @module
 */
import * as zip from "@zip.js/zip.js";
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { join, resolve } from "node:path";
import { createLogger, type Logger, type LogLevel } from "../core/log.ts";
import { type NatsServer, startNatsServer } from "../core/nats_server.ts";
import { type Manager, type ManagerOptions, startManager } from "../manager/mod.ts";
import type { TaskView } from "../core/schema.ts";
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

/** A nats-server with JetStream in a temp folder, and a connection to it. */
export interface TestNats extends AsyncDisposable {
  server: NatsServer;
  nc: NatsConnection;
  dir: string;
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
}

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
    log: testLogger(),
    ...options,
    dataDir,
  });
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
    async [Symbol.asyncDispose]() {
      await manager.stop();
      if (!options.dataDir) await removeTree(dataDir);
    },
  };
}

/** A compute node running as its own process (`deno run main.ts node`). */
export interface NodeProcess extends AsyncDisposable {
  name: string;
  child: Deno.ChildProcess;
  /** Output so far. */
  output(): string;
  kill(signal?: Deno.Signal): Promise<void>;
}

/** Starts `main.ts node` as a child process. */
export function startNodeProcess(
  natsUrl: string,
  name: string,
  workDir: string,
  extra: string[] = [],
): NodeProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      join(ROOT, "main.ts"),
      "node",
      `--nats=${natsUrl}`,
      `--name=${name}`,
      `--work-dir=${workDir}`,
      ...extra,
    ],
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
  return { name, child, output: () => out, kill, [Symbol.asyncDispose]: () => kill("SIGKILL") };
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

/** Submits zip bytes; returns the response. */
export function submitZip(tm: TestManager, bytes: Uint8Array, name = "test"): Promise<Response> {
  return tm.api(`/api/v1/tasks?name=${name}`, {
    method: "POST",
    headers: { "content-type": "application/zip" },
    body: bytes as Uint8Array<ArrayBuffer>,
  });
}

/** Runs the CLI (`main.ts`) against a test manager; returns its exit code and output. */
export async function runCli(tm: TestManager, ...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "main.ts"), ...args],
    env: { PARALLELIC_MANAGER: tm.manager.url, PARALLELIC_TOKEN: TEST_TOKEN },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}
