/**
 * Parallelic as child processes: `main.ts` run as a node
 * (`tools/main_process.ts`), as the CLI, or as a manager that a test can
 * kill and start again (`tools/manager_process.ts`).
 *
 * @module
 */
import { join, resolve } from "node:path";
import { type MainProcess, startMainProcess } from "../../tools/main_process.ts";
import { type ManagerProcess, managerProcess as startManagerProcess } from "../../tools/manager_process.ts";
import { joinTokenOf, TEST_TOKEN, type TestManager } from "./manager.ts";

export { type MainProcess, type ManagerProcess, startMainProcess };

/** The repository root. */
export const ROOT = resolve(import.meta.dirname!, "../..");

/** A compute node running as its own process (`deno run main.ts node`). */
export interface NodeProcess extends MainProcess {
  name: string;
}

/**
 * Starts `main.ts node` as a child process. It gets the join token of the
 * test manager at `natsUrl` in `PARALLELIC_JOIN_TOKEN` unless `env` sets it;
 * `denoFlags` go to `deno run` (say, `--cpu-prof`).
 */
export function startNodeProcess(
  natsUrl: string,
  name: string,
  workDir: string,
  extra: string[] = [],
  env: Record<string, string> = {},
  denoFlags: string[] = [],
): NodeProcess {
  const joinToken = joinTokenOf(natsUrl);
  const process = startMainProcess(
    ["node", `--nats=${natsUrl}`, `--name=${name}`, `--work-dir=${workDir}`, ...extra],
    { denoFlags, env: { ...(joinToken ? { PARALLELIC_JOIN_TOKEN: joinToken } : {}), ...env } },
  );
  return { name, ...process };
}

/** Runs `main.ts` with `args` and `env` (the CLI); returns its exit code and output. */
export async function runCli(
  target: Record<string, string> | TestManager,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  // A test manager, or the environment to run with.
  const env = "manager" in target && typeof target.manager === "object"
    ? { PARALLELIC_MANAGER: (target as TestManager).manager.url, PARALLELIC_TOKEN: TEST_TOKEN }
    : target as Record<string, string>;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", join(ROOT, "main.ts"), ...args],
    env,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const d = new TextDecoder();
  return { code: out.code, stdout: d.decode(out.stdout), stderr: d.decode(out.stderr) };
}

/** A {@linkcode ManagerProcess} with the test admin token (see `tools/manager_process.ts`). */
export function managerProcess(dataDir: string, flags: string[]): ManagerProcess {
  return startManagerProcess(dataDir, flags, TEST_TOKEN);
}
