/**
 * The join actor: answers `parallelic.join`, the one subject the join token
 * may publish on. A node sends its name and its own public nkey; once that
 * key is a NATS user with the node's permissions (the server reloaded), the
 * node reconnects with it and never needs the join token again.
 *
 * A name stays with its key while the node is live: another key for a live
 * name is refused (an impostor, or a copy started twice). Once the node is
 * lost, a new key may take the name over.
 *
 * @module
 */
import type { AuditLog } from "../core/audit.ts";
import type { Bus } from "../core/bus.ts";
import { ConflictError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import { nodeJoin, nodesList } from "../core/schema.ts";
import type { NatsUsers } from "../core/nats_auth.ts";

/** What the join actor needs. */
export interface JoinActorDeps {
  bus: Bus;
  users: NatsUsers;
  audit: AuditLog;
  log: Logger;
}

/** Starts serving joins until `signal` aborts. */
export function createJoinActor(deps: JoinActorDeps, options: { signal: AbortSignal }): void {
  const { bus, users, audit } = deps;
  const log = deps.log.scope({ actor: "join" });
  const isLive = async (name: string) => {
    const reply = await bus.request(nodesList, {}, { timeoutMs: 5000 });
    return reply.ok && reply.nodes.some((n) => n.name === name && n.state !== "lost");
  };
  bus.serve(nodeJoin, async (req) => {
    const refuse = async (why: string): Promise<never> => {
      await audit.record({ action: "node.join-refused", user: null, address: "nats", target: req.name, detail: why });
      log.warn("join:refused", { node: req.name, hostname: req.hostname, why });
      throw new ConflictError(`Cannot let node '${req.name}' join as ${why}`, { code: "node_name_in_use" });
    };
    if (users.isReserved(req.name)) await refuse(`the name '${req.name}' belongs to the manager's own node`);
    const bound = await users.boundKey(req.name);
    if (bound !== req.nkey) {
      if (bound && await isLive(req.name)) {
        await refuse("a live node of that name joined with another key: stop it, or wait until its lease ends");
      }
      await users.bindNode(req.name, req.nkey, req.hostname);
      await audit.record({
        action: "node.join",
        user: null,
        address: "nats",
        target: req.name,
        detail: `hostname ${req.hostname}, key ${req.nkey.slice(0, 12)}…${bound ? ", replacing an older key" : ""}`,
      });
      log.info("join:accepted", { node: req.name, hostname: req.hostname, replaced: bound !== null });
    }
    return { ok: true as const, name: req.name };
  }, { signal: options.signal });
}
