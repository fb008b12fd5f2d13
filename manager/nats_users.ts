/**
 * The NATS users of the embedded server: the manager's own key (new at every
 * start, held only in memory), the join token (an nkey seed kept in
 * `DIR/join-token`, mode 0600), and the key each node joined with (Deno KV
 * `["natsnode", name]`: public keys only). Any change is written to the
 * server's configuration and reloaded before it is reported done.
 *
 * @module
 */
import { z } from "zod";
import { NATS_NODES, natsNodeKey } from "../core/kv.ts";
import { ValidationError } from "../core/errors.ts";
import type { Logger } from "../core/log.ts";
import {
  joinPermissions,
  managerPermissions,
  type NatsUser,
  type NatsUsers,
  newNkeyUser,
  nodePermissions,
  publicKeyOf,
  renderAuthorization,
} from "../core/nats_auth.ts";

/** `["natsnode", name]`: the public nkey a node joined with. */
export const NatsNodeRecord = z.object({
  name: z.string(),
  nkey: z.string(),
  hostname: z.string(),
  joinedAt: z.number(),
});
/** A joined node's key. */
export type NatsNodeRecord = z.infer<typeof NatsNodeRecord>;

/** Options of {@linkcode createNatsUsers}. */
export interface NatsUsersOptions {
  kv: Deno.Kv;
  /** Where the join token is kept (mode 0600). */
  joinTokenFile: string;
  /** A join token to use instead of the file's (it is then written there). */
  joinToken?: string;
  /** Applies a new authorization block to the server (rewrite + reload). */
  apply: (authorization: string) => Promise<void>;
  log: Logger;
}

/** Loads (or makes) the join token and returns the user registry. */
export async function createNatsUsers(options: NatsUsersOptions): Promise<NatsUsers> {
  const { kv, apply } = options;
  const log = options.log.scope({ actor: "nats-users" });
  const manager = newNkeyUser();
  const inProcess = new Map<string, string>();
  let joinSeed = options.joinToken?.trim();
  if (joinSeed) publicKeyOf(joinSeed);
  else {
    try {
      joinSeed = (await Deno.readTextFile(options.joinTokenFile)).trim();
      publicKeyOf(joinSeed);
    } catch (e) {
      if (!(e instanceof Deno.errors.NotFound) && !(e instanceof ValidationError)) throw e;
      joinSeed = undefined;
    }
  }
  const writeToken = async (seed: string) => {
    await Deno.writeTextFile(options.joinTokenFile, seed + "\n", { mode: 0o600 });
    await Deno.chmod(options.joinTokenFile, 0o600);
  };
  if (!joinSeed) joinSeed = newNkeyUser().seed;
  await writeToken(joinSeed);

  const authorization = async () => {
    const users: NatsUser[] = [
      { nkey: manager.publicKey, permissions: managerPermissions(), comment: "the manager" },
      { nkey: publicKeyOf(joinSeed!), permissions: joinPermissions(), comment: "the join token" },
    ];
    for (const [name, key] of inProcess) {
      users.push({ nkey: key, permissions: nodePermissions(name), comment: `node ${name} (in the manager)` });
    }
    for await (const e of kv.list<NatsNodeRecord>({ prefix: NATS_NODES })) {
      if (inProcess.has(e.value.name)) continue;
      users.push({ nkey: e.value.nkey, permissions: nodePermissions(e.value.name), comment: `node ${e.value.name}` });
    }
    return renderAuthorization(users);
  };
  // Changes that come while a reload waits to start share it: a burst of joins costs one or two reloads.
  let queued: Promise<void> | null = null;
  let last: Promise<void> = Promise.resolve();
  const reapply = (): Promise<void> => {
    queued ??= last.catch(() => {}).then(async () => {
      queued = null;
      await apply(await authorization());
    });
    last = queued;
    return queued;
  };

  return {
    manager: { seed: manager.seed },
    joinToken: () => joinSeed!,
    async rotateJoinToken() {
      joinSeed = newNkeyUser().seed;
      await writeToken(joinSeed);
      await reapply();
      log.info("nats:join-token-rotated");
      return joinSeed;
    },
    async inProcessNode(name) {
      const user = newNkeyUser();
      inProcess.set(name, user.publicKey);
      await reapply();
      return { seed: user.seed };
    },
    async boundKey(name) {
      return inProcess.get(name) ?? (await kv.get<NatsNodeRecord>(natsNodeKey(name))).value?.nkey ?? null;
    },
    isReserved: (name) => inProcess.has(name),
    async bindNode(name, nkey, hostname) {
      await kv.set(natsNodeKey(name), { name, nkey, hostname, joinedAt: Date.now() } satisfies NatsNodeRecord);
      await reapply();
    },
    async forgetNode(name) {
      const had = (await kv.get(natsNodeKey(name))).value !== null;
      await kv.delete(natsNodeKey(name));
      if (had) await reapply();
      return had;
    },
    authorization,
  };
}
