/**
 * Calls of the gateway's API that tests share.
 *
 * @module
 */
import type { InstanceView, NodeRecord } from "../../core/schema.ts";
import type { TestManager } from "./manager.ts";
import { waitUntil } from "./wait.ts";

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

/**
 * Waits until `want` nodes (a count, or these names) are ready; returns the node list then. The wait is no speed
 * claim: node processes start `deno run` each, which on a loaded machine may take well over 20 s.
 */
export async function nodesReady(api: Api, want: number | string[], timeoutMs = 60_000): Promise<NodeRecord[]> {
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
