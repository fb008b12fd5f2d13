/**
 * Checks GPU assignment on a machine with real GPUs: starts a manager with
 * its own node on this machine, runs one `gpus = 1` instance that calls
 * `nvidia-smi -L`, and records what the node listed and what the instance
 * saw (its `CUDA_VISIBLE_DEVICES` and nvidia-smi's output) in a JSON file.
 *
 *   deno run -A tools/gpu_check.ts [--out gpu_check.json]
 *
 * Exits 0 when the instance saw exactly the one device it was given, 1 when
 * not, and 2 (saying so) where this machine has no GPU to check with.
 *
 * @module
 */
import { join } from "node:path";
import { parseArgs } from "node:util";
import { UnavailableError } from "../core/errors.ts";
import { createLogger } from "../core/log.ts";
import { zipFolder } from "../core/package_zip.ts";
import type { TaskView } from "../core/schema.ts";
import { startManager } from "../manager/mod.ts";
import { listGpus } from "../node/gpus.ts";

const RUN_SH = `#!/bin/sh
echo "CUDA_VISIBLE_DEVICES=$CUDA_VISIBLE_DEVICES"
echo "NVIDIA_VISIBLE_DEVICES=$NVIDIA_VISIBLE_DEVICES"
nvidia-smi -L
`;

/** What the check saw. */
export interface GpuCheck {
  at: string;
  hostname: string;
  /** The GPUs the node listed. */
  listed: Awaited<ReturnType<typeof listGpus>>;
  /** The instance's state and its log. */
  state: string;
  log: string;
  /** The device indices in the instance's CUDA_VISIBLE_DEVICES. */
  given: string[];
  /** Lines of `nvidia-smi -L` the instance printed (the devices its driver calls showed it). */
  seen: string[];
  ok: boolean;
}

if (import.meta.main) {
  const { values } = parseArgs({ args: Deno.args, options: { out: { type: "string", default: "gpu_check.json" } } });
  const listed = await listGpus();
  if (listed.length === 0) {
    console.log("No GPU here (nvidia-smi is missing, fails, or lists none): nothing to check.");
    Deno.exit(2);
  }
  const dataDir = await Deno.makeTempDir({ prefix: "parallelic-gpu-check-" });
  const taskDir = await Deno.makeTempDir({ prefix: "parallelic-gpu-task-" });
  const token = crypto.randomUUID();
  const manager = await startManager({
    dataDir,
    port: 0,
    natsPort: 0,
    localNode: true,
    token,
    log: createLogger({ level: "warn" }),
  });
  try {
    await Deno.writeTextFile(
      join(taskDir, "task.toml"),
      `[task]\nname = "gpu-check"\nentrypoint = "run.sh"\n[resources]\ngpus = 1\n`,
    );
    await Deno.writeTextFile(join(taskDir, "run.sh"), RUN_SH, { mode: 0o755 });
    const api = (path: string, init: RequestInit = {}) =>
      fetch(`${manager.url}${path}`, { ...init, headers: { ...init.headers, authorization: `Bearer ${token}` } });
    const res = await api("/api/v1/tasks?name=gpu-check", {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: await zipFolder(taskDir) as Uint8Array<ArrayBuffer>,
    });
    if (!res.ok) {
      throw new UnavailableError(`Cannot run the check as the submit failed: ${res.status} ${await res.text()}`);
    }
    const { id } = await res.json();
    let task: TaskView;
    for (;;) {
      task = await (await api(`/api/v1/tasks/${id}`)).json();
      if (["succeeded", "failed", "cancelled"].includes(task.state)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    const log = await (await api(`/api/v1/tasks/${id}/instances/0/logs`)).text();
    const given = (/^CUDA_VISIBLE_DEVICES=(.*)$/m.exec(log)?.[1] ?? "").split(",").filter(Boolean);
    const seen = log.split("\n").filter((l) => l.startsWith("GPU "));
    const check: GpuCheck = {
      at: new Date().toISOString(),
      hostname: Deno.hostname(),
      listed,
      state: task.state,
      log,
      given,
      seen,
      // nvidia-smi -L lists every device (it does not read CUDA_VISIBLE_DEVICES): what counts is the one given.
      ok: task.state === "succeeded" && given.length === 1 && listed.some((g) => String(g.index) === given[0]),
    };
    await Deno.writeTextFile(values.out!, JSON.stringify(check, null, 2) + "\n");
    console.log(
      `${check.ok ? "ok" : "FAIL"}: given GPU ${given.join(",") || "none"} of ${listed.length}; ` +
        `nvidia-smi -L showed ${seen.length} (recorded in ${values.out})`,
    );
    Deno.exitCode = check.ok ? 0 : 1;
  } finally {
    await manager.stop();
    await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    await Deno.remove(taskDir, { recursive: true }).catch(() => {});
  }
}
