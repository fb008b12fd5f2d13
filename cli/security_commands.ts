/**
 * Admin commands: `users`, `tokens rotate`, `audit`, `nodes token`,
 * `nodes forget`.
 *
 * @module
 */
import type { AuditEntry } from "../core/audit.ts";
import type { UserView } from "../core/schema.ts";
import { type Client, usage } from "./client.ts";
import { table } from "./commands.ts";

const post = (body?: unknown): RequestInit => ({
  method: "POST",
  ...(body === undefined ? {} : { headers: { "content-type": "application/json" }, body: JSON.stringify(body) }),
});

/** `parallelic users [ls | add NAME --role R | rm NAME]` */
export async function users(client: Client, args: string[], role: string | undefined, json: boolean): Promise<number> {
  const [verb = "ls", name] = args;
  if (verb === "add") {
    if (!name || !role) usage("Usage: parallelic users add NAME --role admin|submitter|viewer");
    const res = await client.json<{ name: string; role: string; token: string }>("/api/v1/users", post({ name, role }));
    if (json) return console.log(JSON.stringify(res)), 0;
    console.error(`Added user ${res.name} (${res.role}). Their token, shown only this once:`);
    console.log(res.token);
    return 0;
  }
  if (verb === "rm") {
    if (!name) usage("Usage: parallelic users rm NAME");
    await client.fetch(`/api/v1/users/${encodeURIComponent(name)}`, { method: "DELETE" });
    console.log(`Removed user ${name}; their token no longer works`);
    return 0;
  }
  if (verb !== "ls") usage(`Unknown 'users' command '${verb}': use ls, add NAME --role R, or rm NAME`);
  const { users } = await client.json<{ users: UserView[] }>("/api/v1/users");
  if (json) return console.log(JSON.stringify(users, null, 2)), 0;
  console.log(table([
    ["NAME", "ROLE", "CREATED", "TOKEN SINCE"],
    ...users.map((
      u,
    ) => [u.name, u.role, new Date(u.createdAt).toISOString(), new Date(u.tokenCreatedAt).toISOString()]),
  ]));
  return 0;
}

/** `parallelic tokens rotate NAME` */
export async function tokens(client: Client, args: string[]): Promise<number> {
  const [verb, name] = args;
  if (verb !== "rotate" || !name) usage("Usage: parallelic tokens rotate NAME");
  const res = await client.json<{ name: string; token: string }>(
    `/api/v1/users/${encodeURIComponent(name)}/token`,
    post(),
  );
  console.error(`New token of ${res.name}, shown only this once (the old one no longer works):`);
  console.log(res.token);
  return 0;
}

/** `parallelic audit [--limit N]` */
export async function audit(client: Client, limit: number | undefined, json: boolean): Promise<number> {
  const { entries } = await client.json<{ entries: AuditEntry[] }>(`/api/v1/audit?limit=${limit ?? 100}`);
  if (json) return console.log(JSON.stringify(entries, null, 2)), 0;
  if (entries.length === 0) return console.log("The audit log is empty."), 0;
  console.log(table([
    ["TIME", "ACTION", "USER", "ADDRESS", "TARGET", "DETAIL"],
    ...entries.map((e) => [
      new Date(e.at).toISOString(),
      e.action,
      e.user ?? "-",
      e.address,
      e.target ?? "-",
      e.detail ?? "",
    ]),
  ]));
  return 0;
}

/** `parallelic nodes token [--rotate]` and `parallelic nodes forget NAME`; null when `args` is neither. */
export async function nodesSecurity(client: Client, args: string[], rotate: boolean): Promise<number | null> {
  const [verb, name] = args;
  if (verb === "token") {
    const { token } = rotate
      ? await client.json<{ token: string }>("/api/v1/nodes/join-token/rotate", post())
      : await client.json<{ token: string }>("/api/v1/nodes/join-token");
    if (rotate) console.error("New join token (nodes that joined keep working; new ones need this):");
    console.log(token);
    return 0;
  }
  if (verb === "forget") {
    if (!name) usage("Usage: parallelic nodes forget NAME");
    await client.json(`/api/v1/nodes/${encodeURIComponent(name)}/forget`, post());
    console.log(`Node ${name} may no longer connect to NATS; it needs the join token to come back`);
    return 0;
  }
  return null;
}
