/**
 * Helpers of the chaos soak (`bench/chaos.ts`): a seeded random source, a
 * node list that tolerates a manager being down, unzipping, and a scan of
 * /proc for processes a task left behind.
 *
 * @module
 */
import type { NodeRecord } from "../core/schema.ts";
import type { ManagerProcess } from "../tools/manager_process.ts";

/** A seeded random source in [0, 1) (mulberry32), so that a run can be repeated by its seed. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The manager's nodes, or none while it does not answer (killed, stopped or restarting). */
export async function listNodesOrNone(api: ManagerProcess["api"]): Promise<NodeRecord[]> {
  try {
    const res = await api("/api/v1/nodes");
    if (!res.ok) {
      // During a NATS failover the API answers 503 "try again".
      await res.body?.cancel();
      return [];
    }
    return (await res.json() as { nodes: NodeRecord[] }).nodes;
  } catch {
    return [];
  }
}

/** Unpacks `zip` into `dir` with unzip(1). */
export async function unzipTo(zip: Uint8Array, dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const file = `${dir}.zip`;
  await Deno.writeFile(file, zip);
  const out = await new Deno.Command("unzip", { args: ["-q", "-o", file, "-d", dir], stderr: "piped" }).output();
  if (!out.success) throw new Error(`unzip failed: ${new TextDecoder().decode(out.stderr)}`);
}

/**
 * Processes (other than this one) whose environment names `taskId` or a path
 * under `runDir`: what a task's instances or finalize left running.
 */
export async function leftoverProcesses(taskId: string, runDir: string): Promise<string[]> {
  const found: string[] = [];
  for await (const e of Deno.readDir("/proc")) {
    if (!/^\d+$/.test(e.name) || Number(e.name) === Deno.pid) continue;
    let env: string;
    try {
      env = await Deno.readTextFile(`/proc/${e.name}/environ`);
      if (/^\d+ \(.*\) Z/.test(await Deno.readTextFile(`/proc/${e.name}/stat`))) continue;
    } catch {
      continue; // gone, or not ours to read
    }
    if (!env.includes(taskId) && !env.split("\0").some((kv) => kv.includes(`=${runDir}/`))) continue;
    const cmd = await Deno.readTextFile(`/proc/${e.name}/cmdline`).catch(() => "");
    found.push(`${e.name} ${cmd.replaceAll("\0", " ").trim()}`);
  }
  return found;
}
