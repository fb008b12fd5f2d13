/**
 * Test helpers for the task actor: node records and a fake compute node on the real bus.
 *
 * @module
 */
import { type Bus, createBus, unwrap } from "../../core/bus.ts";
import { connectAsNode, testLogger } from "../../tests/kit/mod.ts";
import {
  type Assignment,
  type InstanceRef,
  type Kill,
  nodeAssign,
  nodeKill,
  type NodeRecord,
  nodesEvent,
  type Result,
  taskResults,
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
