/**
 * A manager run as its own process (`deno run main.ts manager`) on a fixed
 * port and data dir, so that a test or a benchmark can kill it and start it
 * again (fault, shutdown and backup tests, the chaos soak).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { freePort } from "../core/nats_server.ts";
import type { TaskView } from "../core/schema.ts";
import { waitUntil } from "./wait.ts";

const ROOT = resolve(import.meta.dirname!, "..");

/** A manager run as its own process, started and stopped at will. */
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

/**
 * Makes a {@linkcode ManagerProcess} (not started) with `flags` after
 * `manager --data-dir --port`; `token` is its admin token.
 */
export function managerProcess(dataDir: string, flags: string[], token: string): ManagerProcess {
  const port = freePort();
  let child: Deno.ChildProcess | undefined;
  const api = (path: string, init: RequestInit = {}) =>
    fetch(`http://127.0.0.1:${port}${path}`, {
      ...init,
      headers: { ...init.headers, authorization: `Bearer ${token}` },
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
        env: { PARALLELIC_TOKEN: token },
        stdout: "null",
        stderr: "null",
      }).spawn();
      await waitUntil(() => api("/healthz").then((r) => r.ok, () => false), 30_000, "the manager to answer");
    },
    stop,
    [Symbol.asyncDispose]: async () => void await stop("SIGTERM"),
  };
}
