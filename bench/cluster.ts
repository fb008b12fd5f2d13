/**
 * A cluster for benchmarks: the manager as a process of its own (so that its
 * memory and CPU time can be read from /proc, and the benchmark's own work
 * does not share its event loop), node processes, the API, and the
 * `parallelic.task.*.done` events that time a task's end precisely.
 *
 * The nats-server is one the benchmark starts (the manager's `--nats`), with
 * no users: the benchmark listens to the engine's subjects and measures raw
 * NATS on it, which an embedded server's nkey users would not allow. Its
 * per-message permission checks are therefore not in the figures.
 *
 * @module
 */
import { connect, type NatsConnection } from "@nats-io/transport-node";
import { join } from "node:path";
import { createBus } from "../core/bus.ts";
import { createLogger } from "../core/log.ts";
import { startNatsCluster, startNatsServer } from "../core/nats_server.ts";
import { zipFolder } from "../core/package_zip.ts";
import { type NodeRecord, type SubmitView, type TaskDone, taskDoneAll } from "../core/schema.ts";
import { type BenchContext, type ProcStats, procStats, sleep } from "./_util.ts";
import { type MainProcess, startMainProcess } from "../tools/main_process.ts";

/** The admin token of benchmark managers. */
export const TOKEN = "parallelic-bench-token";

/** Options of {@linkcode startCluster}. */
export interface ClusterOptions {
  /** Extra manager flags (`--heartbeat-ms 1000`, …). */
  managerArgs?: string[];
  /**
   * NATS servers: 1 (default), or a NATS cluster of this many with clustered
   * JetStream, whose buckets and streams the manager replicates on each.
   */
  natsServers?: number;
  /** Extra environment of the manager and the nodes it starts (`PARALLELIC_TRACE`, …). */
  env?: Record<string, string>;
  /**
   * Slots of the manager's own local node (the README's set-up); none
   * (`--no-local-node`) when not given.
   */
  localSlots?: number;
}

/** Options of {@linkcode BenchCluster.addNodes}. */
export interface AddNodesOptions {
  /** Slots of each node. @default {1} */
  slots?: number;
  /** Nodes report instances done without running them (`--bench-noop`). @default {false} */
  noop?: boolean;
  /** How many start at once: each is a Deno process that costs CPU to start. @default {4} */
  startBatch?: number;
  /** Folder under which each node gets its work dir (package cache, instance copies). @default {the temp folder} */
  workDir?: string;
}

/** A manager process with its nodes. */
export interface BenchCluster extends AsyncDisposable {
  /** The gateway's URL. */
  readonly url: string;
  /** The NATS URL nodes join with. */
  readonly natsUrl: string;
  /** The manager's pid. */
  readonly pid: number;
  /** The manager's Deno KV file. */
  readonly kvFile: string;
  /** The benchmark's own NATS connection. */
  readonly nc: NatsConnection;
  /** The node processes started so far. */
  readonly nodes: MainProcess[];
  /** Calls the API with the admin token. */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Calls the API and returns its JSON, throwing on an error status. */
  json<T>(path: string, init?: RequestInit): Promise<T>;
  /** Submits a package; returns the API's answer. */
  submit(zip: Uint8Array): Promise<SubmitView>;
  /** Resolves with the task's done event (also when it came before the call); rejects after `timeoutMs`. */
  done(taskId: string, timeoutMs?: number): Promise<TaskDone>;
  /** Starts node processes and waits until they all joined. */
  addNodes(count: number, options?: AddNodesOptions): Promise<MainProcess[]>;
  /** /proc readings of the manager. */
  managerStats(): Promise<ProcStats>;
  /** /proc readings of the nats-server. */
  natsStats(): Promise<ProcStats | null>;
  /** Stops the nodes, the manager and the connection. */
  stop(): Promise<void>;
}

/** Starts a nats-server and a manager process (no local node unless `localSlots`) in `ctx.dir`. */
export async function startCluster(ctx: BenchContext, options: ClusterOptions = {}): Promise<BenchCluster> {
  // A folder of its own: a benchmark may run two clusters side by side.
  const base = await Deno.makeTempDir({ dir: ctx.dir, prefix: "cluster-" });
  const dataDir = join(base, "manager");
  const profile = (who: string) => ctx.profileDir ? ["--cpu-prof", `--cpu-prof-dir=${join(ctx.profileDir, who)}`] : [];
  const clustered = (options.natsServers ?? 1) > 1
    ? await startNatsCluster(join(base, "nats-cluster"), options.natsServers, "parallelic-bench")
    : null;
  const natsServer = clustered?.servers[0] ?? await startNatsServer({ storeDir: join(base, "nats"), port: 0 });
  const natsUrl = clustered?.urls ?? natsServer.url;
  const stopNats = async () => void await Promise.all((clustered?.servers ?? [natsServer]).map((s) => s.stop()));
  const manager: MainProcess = startMainProcess([
    "manager",
    `--data-dir=${dataDir}`,
    "--port=0",
    `--nats=${natsUrl}`,
    ...clustered ? [`--replicas=${clustered.servers.length}`] : [],
    ...options.localSlots ? [`--slots=${options.localSlots}`] : ["--no-local-node"],
    "--log-level=warn",
    // Benchmarks measure the engine, not the per-token rate limit of the API.
    "--rate-limit=1000000",
    ...options.managerArgs ?? [],
  ], { denoFlags: profile("manager"), env: { ...options.env, PARALLELIC_TOKEN: TOKEN } });
  const nodes: MainProcess[] = [];
  let nc: NatsConnection | undefined;
  try {
    const deadline = Date.now() + 60_000;
    let url: string | undefined;
    while (!url) {
      const out = manager.output();
      url = out.match(/gateway:\s+(http:\/\/\S+)/)?.[1];
      const exited = await Promise.race([manager.child.status.then(() => true), sleep(50).then(() => false)]);
      if (exited || Date.now() > deadline) throw new Error(`The manager did not start:\n${out}`);
    }
    nc = await connect({ servers: natsUrl.split(",") });
    const bus = createBus(nc, createLogger({ level: "error" }));
    const doneEvents = new Map<string, TaskDone>();
    const waiters = new Map<string, (d: TaskDone) => void>();
    bus.subscribe(taskDoneAll, (d) => {
      const waiter = waiters.get(d.taskId);
      if (waiter) {
        waiters.delete(d.taskId);
        waiter(d);
      } else doneEvents.set(d.taskId, d);
    });
    await nc.flush();
    const api = (path: string, init: RequestInit = {}) => {
      const headers = new Headers(init.headers);
      headers.set("authorization", `Bearer ${TOKEN}`);
      return fetch(`${url}${path}`, { ...init, headers });
    };
    const json = async <T>(path: string, init?: RequestInit): Promise<T> => {
      const res = await api(path, init);
      const body = await res.json();
      if (!res.ok) throw new Error(`${init?.method ?? "GET"} ${path} answered ${res.status}: ${JSON.stringify(body)}`);
      return body as T;
    };
    const joined = async () => (await json<{ nodes: NodeRecord[] }>("/api/v1/nodes")).nodes.length;
    const stop = async () => {
      await Promise.all(nodes.map((n) => n.kill("SIGTERM")));
      await manager.kill("SIGTERM");
      await nc?.close().catch(() => {});
      await stopNats();
    };
    return {
      url,
      natsUrl,
      pid: manager.child.pid,
      kvFile: join(dataDir, "state.kv"),
      nc,
      nodes,
      api,
      json,
      submit: (zip) =>
        json<SubmitView>("/api/v1/tasks", {
          method: "POST",
          headers: { "content-type": "application/zip" },
          body: zip as Uint8Array<ArrayBuffer>,
        }),
      done(taskId, timeoutMs = 600_000) {
        const d = doneEvents.get(taskId);
        if (d) {
          doneEvents.delete(taskId);
          return Promise.resolve(d);
        }
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            waiters.delete(taskId);
            reject(new Error(`Task ${taskId} did not end within ${timeoutMs} ms`));
          }, timeoutMs);
          waiters.set(taskId, (d) => {
            clearTimeout(timer);
            resolve(d);
          });
        });
      },
      async addNodes(count, opts = {}) {
        const first = nodes.length;
        const want = first + count;
        const batch = opts.startBatch ?? 4;
        for (let i = first; i < want; i += batch) {
          for (let j = i; j < Math.min(want, i + batch); j++) {
            const name = `bench-${j}`;
            nodes.push(startMainProcess([
              "node",
              `--nats=${natsUrl}`,
              `--name=${name}`,
              `--work-dir=${join(opts.workDir ?? base, name)}`,
              `--slots=${opts.slots ?? 1}`,
              "--log-level=warn",
              ...opts.noop ? ["--bench-noop"] : [],
            ], { denoFlags: profile("nodes"), env: options.env ?? {} }));
          }
          // Start the next few once these joined, so that 50 starts do not thrash two cores.
          const started = Math.min(want, i + batch);
          const until = Date.now() + 120_000;
          while (await joined() < started) {
            if (Date.now() > until) throw new Error(`Only ${await joined()} of ${started} nodes joined in 120 s`);
            await sleep(100);
          }
        }
        return nodes.slice(first);
      },
      managerStats: () => procStats(manager.child.pid),
      async natsStats() {
        // Summed over every server of a NATS cluster.
        const all = await Promise.all(
          (clustered?.servers ?? [natsServer]).map((n) => procStats(n.pid).catch(() => null)),
        );
        const live = all.filter((x): x is ProcStats => x !== null);
        if (live.length === 0) return null;
        return live.reduce((a, b) => ({
          ...a,
          cpuSeconds: a.cpuSeconds + b.cpuSeconds,
          rssBytes: a.rssBytes + b.rssBytes,
        }));
      },
      stop,
      [Symbol.asyncDispose]: stop,
    };
  } catch (e) {
    await Promise.all(nodes.map((n) => n.kill("SIGKILL")));
    await manager.kill("SIGKILL");
    await nc?.close().catch(() => {});
    await stopNats();
    throw e;
  }
}

/** A package whose entrypoint is a copy of `/usr/bin/true`, with `instances` instances. */
export async function truePackage(dir: string, instances: number): Promise<Uint8Array> {
  const root = await Deno.makeTempDir({ dir, prefix: "pkg-" });
  await Deno.copyFile("/usr/bin/true", join(root, "true"));
  await Deno.writeTextFile(join(root, "task.toml"), `[task]\nentrypoint = "true"\ninstances = ${instances}\n`);
  return await zipFolder(root);
}
