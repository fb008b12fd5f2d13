/**
 * `deno run -A main.ts ...` as a child process (a manager, a node), its
 * output kept so that a line can be waited for and shown when something
 * fails. Tests (`tests/kit/`) and benchmarks (`bench/cluster.ts`) start
 * Parallelic's processes with it.
 *
 * @module
 */
import { join, resolve } from "node:path";

const ROOT = resolve(import.meta.dirname!, "..");

/** A `main.ts` child process, its output (stdout and stderr) kept. */
export interface MainProcess extends AsyncDisposable {
  child: Deno.ChildProcess;
  /** Output so far. */
  output(): string;
  /** Waits until the output matches `re`; throws with the output's tail after `timeoutMs`. */
  waitFor(re: RegExp, what: string, timeoutMs?: number): Promise<RegExpExecArray>;
  /** Sends `signal` (unless it exited) and waits until it has exited. */
  kill(signal?: Deno.Signal): Promise<void>;
}

/** Starts `deno run -A [denoFlags] main.ts ARGS` (`denoFlags`: say, `--cpu-prof`); disposing it kills it. */
export function startMainProcess(
  args: string[],
  options: { denoFlags?: string[]; env?: Record<string, string> } = {},
): MainProcess {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", ...options.denoFlags ?? [], join(ROOT, "main.ts"), ...args],
    env: options.env,
    stdout: "piped",
    stderr: "piped",
    stdin: "null",
  }).spawn();
  let out = "";
  const decoder = new TextDecoder();
  const drain = (s: ReadableStream<Uint8Array>) =>
    (async () => {
      for await (const c of s) out += decoder.decode(c);
    })().catch(() => {});
  const drained = Promise.all([drain(child.stdout), drain(child.stderr)]);
  const waitFor = async (re: RegExp, what: string, timeoutMs = 60_000) => {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(out);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}; output:\n${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  let done = false;
  const kill = async (signal: Deno.Signal = "SIGTERM") => {
    if (!done) {
      try {
        child.kill(signal);
      } catch { /* exited */ }
    }
    await child.status;
    done = true;
    await drained;
  };
  return { child, output: () => out, waitFor, kill, [Symbol.asyncDispose]: () => kill("SIGKILL") };
}
