/**
 * Test helpers for the task actor: the actor on a real nats-server and Deno KV, node records, a fake compute node on
 * the real bus, submits.
 *
 * @module
 */
import { type Bus, createBus, unwrap } from "../../core/bus.ts";
import { connectAsNode, startTestNats, testLogger, waitUntil } from "../../tests/kit/mod.ts";
import { join } from "node:path";
import { createAuditLog } from "../../core/audit.ts";
import { systemClock } from "../../core/clock.ts";
import { parseTaskToml } from "../../core/task_toml.ts";
import { taskKey } from "../../core/kv.ts";
import { createTaskActor, type TaskActorOptions } from "./mod.ts";
import {
  type Assignment,
  type InstanceRef,
  type Kill,
  nodeAssign,
  nodeKill,
  type NodeRecord,
  nodesEvent,
  type Result,
  type TaskRecord,
  taskResults,
  taskSubmit,
} from "../../core/schema.ts";

const nodeBuses = new Map<string, Promise<Bus>>();
/** A bus over a connection of node `name`: the manager's bus answers a node's requests only into its own inbox. */
function nodeBus(bus: Bus, name: string): Promise<Bus> {
  const key = `${bus.nc.getServer()}/${name}`;
  let b = nodeBuses.get(key);
  if (!b) {
    b = connectAsNode(bus.nc.getServer(), name).then((nc) => createBus(nc, testLogger()));
    nodeBuses.set(key, b);
  }
  return b;
}

/** A package digest for tests. */
export const DIGEST = `sha256-${"a".repeat(64)}`;

/** A ready node's record with `slots` slots and 1 GiB. */
export function nodeRecord(name: string, slots = 2, more: Partial<NodeRecord> = {}): NodeRecord {
  return {
    name,
    slots,
    cpus: slots,
    memoryBytes: 2 ** 30,
    gpus: 0,
    labels: {},
    state: "ready",
    drain: false,
    version: "test",
    hostname: "test",
    joinedAt: 0,
    lastSeenAt: 0,
    usedSlots: 0,
    holding: 0,
    ...more,
  };
}

/** How a reported attempt ended: exit code 0 unless said otherwise. */
type Ended = Partial<Omit<Result, keyof InstanceRef>>;

/**
 * A fake compute node on the real bus: records what it is assigned and told to kill, and reports results. With `slots`
 * it joins at once (as the node actor would announce it); else call `join` when the test wants it.
 */
export function fakeNode(bus: Bus, name: string, slots?: number, more: Partial<NodeRecord> = {}) {
  const assigned: InstanceRef[] = [];
  const runs: Assignment["tasks"][number]["run"][] = [];
  const kills: Kill[] = [];
  bus.subscribe(nodeAssign(name), (msg: Assignment) => {
    for (const t of msg.tasks) for (const i of t.items) assigned.push({ taskId: t.taskId, ...i }), runs.push(t.run);
  });
  bus.subscribe(nodeKill(name), (k) => void kills.push(k));
  const node = {
    assigned,
    runs,
    kills,
    /** Announces the node as joined (or, with `kind`, updated, lost or left). */
    join(slots: number, more: Partial<NodeRecord> = {}, kind: "joined" | "updated" | "lost" | "left" = "joined") {
      bus.publish(nodesEvent, { kind, node: nodeRecord(name, slots, more) });
    },
    /** Reports these attempts as ended (exit code 0 unless `ended` says otherwise), as node `from`; the answer. */
    async report(items: InstanceRef[], ended: Ended = {}, from = name) {
      const now = Date.now();
      return unwrap(
        await (await nodeBus(bus, from)).request(taskResults(from), {
          node: from,
          results: items.map((i) => ({
            ...i,
            exitCode: 0,
            signal: null,
            startedAt: now,
            endedAt: now,
            error: null,
            ...ended,
          })),
        }),
      );
    },
  };
  if (slots !== undefined) node.join(slots, more);
  return node;
}

/**
 * A task actor on a real nats-server and Deno KV, stopped and cleaned up by `await using`. `wrapKv` puts something
 * between the actor and Deno KV (a fault, a recorder); `audit` gives it an audit log.
 */
export async function actorEnv(
  options: Partial<TaskActorOptions> = {},
  env: { wrapKv?: (kv: Deno.Kv) => Deno.Kv; audit?: boolean } = {},
) {
  const nats = await startTestNats();
  const kv = await Deno.openKv(join(nats.dir, "state.kv"));
  const bus = createBus(nats.nc, testLogger());
  const abort = new AbortController();
  const log = testLogger();
  const actor = createTaskActor({
    bus,
    kv: env.wrapKv?.(kv) ?? kv,
    clock: systemClock,
    log,
    audit: env.audit ? createAuditLog(kv, log) : undefined,
  }, { signal: abort.signal, retryBackoffMs: 10, orphanGraceMs: 60_000, ...options });
  await actor.ready;
  return {
    nats,
    kv,
    bus,
    actor,
    async [Symbol.asyncDispose]() {
      abort.abort();
      await actor.stopped;
      kv.close();
      await nats[Symbol.asyncDispose]();
    },
  };
}

/** Submits a task.toml as owner alice; the answer. */
export async function submit(bus: Bus, toml: string) {
  // The submit is answered in-process and could overtake the node events this test just published over NATS:
  // a flush's answer comes after the server has delivered them back (one connection keeps its order).
  await bus.nc.flush();
  return unwrap(
    await bus.request(taskSubmit, { digest: DIGEST, packageBytes: 1, spec: parseTaskToml(toml), owner: "alice" }),
  );
}

/** Waits until the stored record of task `id` passes `ok`; returns it. */
export async function taskWhen(kv: Deno.Kv, id: string, ok: (r: TaskRecord) => boolean, what: string) {
  return await waitUntil(
    async () => {
      const r = (await kv.get<TaskRecord>(taskKey(id))).value!;
      return ok(r) ? r : null;
    },
    5000,
    what,
  );
}
