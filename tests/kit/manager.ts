/**
 * A real manager in the test's own process, on free ports with an embedded
 * NATS server, its API at hand.
 *
 * @module
 */
import type { NatsConnection } from "@nats-io/transport-node";
import { connectNats } from "../../core/nats_connect.ts";
import type { TaskView } from "../../core/schema.ts";
import { type Manager, type ManagerOptions, startManager } from "../../manager/mod.ts";
import { removeTree } from "../../node/readonly.ts";
import { testLogger } from "./log.ts";

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
 * `startNodeProcess` gives a node the join token of the manager it joins
 * without every test passing it.
 */
const joinTokens = new Map<string, string>();

/** The join token of the test manager whose NATS server is at `natsUrl`, if one runs. */
export const joinTokenOf = (natsUrl: string): string | undefined => joinTokens.get(natsUrl);

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
