/**
 * `parallelic doctor`: checks what Parallelic needs and says what to do
 * about each problem.
 *
 * @module
 */
import { jetstreamManager } from "@nats-io/jetstream";
import { Objm } from "@nats-io/obj";
import { connectNats, isAuthError, type NatsCredentials, type NatsTls } from "../core/nats_connect.ts";
import { join } from "node:path";
import type { NodeRecord } from "../core/schema.ts";
import type { Client } from "./client.ts";

/** One check's outcome. */
export interface Check {
  name: string;
  ok: boolean;
  detail: string;
  /** What to do when it failed. */
  fix?: string;
}

/** Options of {@linkcode doctor}. */
export interface DoctorOptions {
  client: Client;
  natsUrl: string;
  dataDir: string;
  workDir?: string;
  /** NATS credentials (a secured NATS refuses anonymous clients; JetStream is then checked through the manager). */
  natsCredentials?: NatsCredentials;
  /** TLS towards NATS. */
  natsTls?: NatsTls;
}

async function run(cmd: string, args: string[]): Promise<string | null> {
  try {
    const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    return out.success ? new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr) : null;
  } catch {
    return null;
  }
}

/** Free bytes on the file system holding `dir` (or its nearest existing parent). */
async function freeBytes(dir: string): Promise<number | null> {
  let path = dir;
  for (let i = 0; i < 20; i++) {
    try {
      await Deno.stat(path);
      break;
    } catch {
      path = join(path, "..");
    }
  }
  const out = await run("df", ["-Pk", path]);
  const kb = out?.trim().split("\n")[1]?.split(/\s+/)[3];
  return kb ? Number(kb) * 1024 : null;
}

/** Runs every check; returns them in order. */
export async function doctor(options: DoctorOptions): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const deno = Deno.version.deno;
  add({
    name: "Deno",
    ok: deno.startsWith("2."),
    detail: `Deno ${deno}`,
    fix: "install Deno 2.9.6: npm install -g deno@2.9.6",
  });
  const natsVersion = await run("nats-server", ["--version"]);
  add({
    name: "nats-server",
    ok: natsVersion !== null,
    detail: natsVersion?.trim() ?? "not found on PATH",
    fix: "install it: apt-get install -y nats-server (only needed where the manager embeds NATS)",
  });
  let jetStreamViaManager = false;
  try {
    const nc = await connectNats({
      servers: options.natsUrl,
      name: "parallelic-doctor",
      credentials: options.natsCredentials,
      tls: options.natsTls,
    });
    try {
      add({ name: "NATS reachable", ok: true, detail: `${options.natsUrl} (server ${nc.info?.version})` });
      try {
        const jsm = await jetstreamManager(nc);
        const info = await jsm.getAccountInfo();
        add({ name: "JetStream", ok: true, detail: `enabled, ${info.streams} streams, ${info.storage} bytes stored` });
        const store = await new Objm(nc).create("parallelic-doctor", { ttl: 60_000_000_000 });
        await store.putBlob({ name: "probe" }, new TextEncoder().encode("ok"));
        const back = await store.getBlob("probe");
        await store.destroy();
        add({ name: "object store writable", ok: back !== null, detail: "wrote, read and removed a probe object" });
      } catch (e) {
        add({
          name: "JetStream",
          ok: false,
          detail: (e as Error).message,
          fix: "start nats-server with -js (the manager's embedded server does)",
        });
      }
    } finally {
      await nc.close();
    }
  } catch (e) {
    if (isAuthError(e) && !options.natsCredentials) {
      // NATS answered and wants credentials: as it should. JetStream is checked through the manager below.
      add({ name: "NATS reachable", ok: true, detail: `${options.natsUrl} (requires credentials, as it should)` });
      jetStreamViaManager = true;
    } else {
      add({
        name: "NATS reachable",
        ok: false,
        detail: `${options.natsUrl}: ${(e as Error).message}`,
        fix: isAuthError(e)
          ? "check the NATS credentials (--nats-seed-file, or --nats-user with --nats-password-file)"
          : "start the manager (bash dev.sh start) or pass --nats nats://HOST:4222",
      });
    }
  }
  try {
    await Deno.mkdir(options.dataDir, { recursive: true });
    const kv = await Deno.openKv(join(options.dataDir, "state.kv"));
    try {
      await kv.set(["doctor", "probe"], Date.now());
      await kv.delete(["doctor", "probe"]);
      add({ name: "Deno KV writable", ok: true, detail: join(options.dataDir, "state.kv") });
    } finally {
      kv.close();
    }
  } catch (e) {
    add({
      name: "Deno KV writable",
      ok: false,
      detail: (e as Error).message,
      fix: "check the data dir's permissions, or pass --data-dir",
    });
  }
  for (const [what, dir] of [["data dir", options.dataDir], ["work dir", options.workDir]] as const) {
    if (!dir) continue;
    const free = await freeBytes(dir);
    add({
      name: `free disk (${what})`,
      ok: free !== null && free > 2 ** 30,
      detail: free === null ? `cannot tell for ${dir}` : `${(free / 2 ** 30).toFixed(1)} GiB free at ${dir}`,
      fix: "free some space: packages, logs and workspaces need room",
    });
  }
  try {
    const who = await options.client.json<{ user: string; role: string }>("/api/v1/whoami");
    add({ name: "token valid", ok: true, detail: `${options.client.settings.manager} as ${who.user} (${who.role})` });
    if (jetStreamViaManager) {
      const metrics = await (await options.client.fetch("/metrics")).text();
      const stored = /parallelic_object_store_bytes\{bucket="packages"\} (\d+)/.exec(metrics);
      add({
        name: "JetStream",
        ok: stored !== null,
        detail: stored
          ? `the manager reads its object store (${stored[1]} bytes of packages)`
          : "the manager reports no object store",
        fix: "look at the manager's log: JetStream must be enabled on its NATS server",
      });
    }
    const { nodes } = await options.client.json<{ nodes: NodeRecord[] }>("/api/v1/nodes");
    const live = nodes.filter((n) => n.state === "ready" || n.state === "draining");
    add({
      name: "nodes",
      ok: live.length > 0,
      detail: `${live.length} of ${nodes.length} nodes live`,
      fix: "start a node: deno task node --nats=nats://HOST:4222",
    });
    for (const n of live) add(limitsCheck(n));
    for (const n of live) {
      const skew = Math.abs(n.clockSkewMs ?? 0);
      add({
        name: `clock skew ${n.name}`,
        ok: skew < 2000,
        detail: `${n.clockSkewMs ?? "?"} ms`,
        fix: "synchronize clocks (e.g. systemd-timesyncd or chrony) on manager and nodes",
      });
    }
  } catch (e) {
    const unreachable = (e as Error).name === "UnavailableError";
    add({
      name: unreachable ? "manager reachable" : "token valid",
      ok: false,
      detail: (e as Error).message,
      fix: unreachable
        ? "start the manager (bash dev.sh start) or pass --manager http://HOST:8080"
        : "set PARALLELIC_TOKEN or run 'parallelic login --manager URL --token TOKEN'",
    });
  }
  return checks;
}

/** How a node holds instances to their `[resources]`, as it reported at register. */
export function limitsCheck(n: NodeRecord): Check {
  const l = n.limits;
  const gpus = n.gpuDevices?.length
    ? `${n.gpuDevices.length} GPUs (${[...new Set(n.gpuDevices.map((g) => g.name))].join(", ")})`
    : `${n.gpus} GPUs`;
  return {
    name: `limits ${n.name}`,
    // Memory held by watching is weaker (it acts between looks), but works: a warning belongs in the detail.
    ok: l !== undefined && l.cpus !== "none",
    detail: l
      ? `CPUs ${l.cpus === "none" ? "not pinned" : "pinned with sched_setaffinity"}; memory ${
        l.memory === "cgroup2"
          ? "held by cgroup v2 memory.max"
          : "watched (RSS of the tree every 200 ms, killed past its limit)"
      }; usage from ${l.usage === "cgroup2" ? "cgroup v2 cpu.stat" : "/proc and wait4"}; ${gpus}${
        l.cgroupFavorDynmods === false
          ? "; cgroup v2 is mounted without favordynmods: on an idle node an instance may wait milliseconds to " +
            "join its cgroup (on Linux 6.0 or later: mount -o remount,favordynmods, see docs/operations.md)"
          : ""
      }`
      : "not reported (a node older than the manager)",
    fix: l
      ? "run the node on Linux with glibc and --allow-ffi (CPU pinning needs sched_setaffinity)"
      : "upgrade the node",
  };
}

/** Prints checks; returns the exit code (1 when any failed). */
export function printChecks(checks: Check[]): number {
  for (const c of checks) {
    console.log(
      `${c.ok ? "ok  " : "FAIL"} ${c.name.padEnd(24)} ${c.detail}${c.ok || !c.fix ? "" : `\n     -> ${c.fix}`}`,
    );
  }
  const failed = checks.filter((c) => !c.ok).length;
  console.log(failed ? `\n${failed} of ${checks.length} checks failed.` : `\nAll ${checks.length} checks passed.`);
  return failed ? 1 : 0;
}
