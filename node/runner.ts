/**
 * Runs one instance: its run dir (a private copy of the task root, made
 * ahead), its data and outputs (see `instance_io.ts`), its environment, its
 * process (as another user with `--run-as`), its log stream, its timeout and
 * kill; then stores its outputs and reports its result.
 *
 * @module
 */
import { join } from "node:path";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import { entrypointProblem, formatDurationMs } from "../core/outcome.ts";
import { inputEnv, type InputRows } from "../core/inputs.ts";
import { readInputsFile } from "../core/package.ts";
import type { Digest, InstanceRef, Result } from "../core/schema.ts";
import type { PackageCache } from "./cache.ts";
import type { LogSender } from "./log_sender.ts";
import { type InstanceIo, type InstanceIoContext, prepareInstanceIo } from "./instance_io.ts";
import { type Job, refsOf } from "./queue.ts";
import { prepareChunk, storeChunkOutputs } from "./chunk.ts";
import type { RunDir, RunDirs } from "./run_dirs.ts";
import { asUser, type RunAs } from "./run_as.ts";
import type { TaskUser, TaskUsers } from "./task_users.ts";
import { attemptLog } from "./attempt_log.ts";
import { baseEnv, instanceEnv } from "./instance_env.ts";
import { filesWrittenSince, outputHint } from "./output_hint.ts";
import { isEmptyDir } from "./outputs.ts";
import { resultOf } from "./results.ts";
import type { Spawner } from "./spawn.ts";
import type { NodeResources } from "./limits.ts";

/** The shell that runs `command` lines. */
const SHELL = "/bin/sh";

/**
 * Retries a JetStream publish for up to `totalMs` (a NATS server restarting,
 * a stream electing a leader), backing off.
 */
export async function publishRetrying<T>(fn: () => Promise<T>, totalMs = 30_000): Promise<T> {
  const deadline = Date.now() + totalMs;
  for (let delay = 100;; delay = Math.min(delay * 2, 2000)) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() + delay > deadline) throw e;
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}

/** What the runner needs. */
export interface RunnerDeps {
  /** The node's name. */
  name: string;
  clock: Clock;
  log: Logger;
  /** Log chunks go to the manager through it. */
  logs: LogSender;
  /** Data sets and the workspace (see `instance_io.ts`). */
  io: InstanceIoContext;
  cache: PackageCache;
  runDirs: RunDirs;
  spawner: Spawner;
  runAs: RunAs | null;
  /** Each task's uid of `--run-as-range`, or null. */
  taskUsers: TaskUsers | null;
  /** CPUs, GPUs, memory and usage of each instance (see `limits.ts`). */
  resources: NodeResources;
  /** Kill grace: SIGTERM, then SIGKILL after this long. */
  killGraceMs: number;
  /** Benchmarks only: report exit 0 at once (see `NodeOptions.noop`). */
  noop: boolean;
  /** Sends a result to the manager. */
  report(result: Result): void;
}

/** The runner of {@linkcode createRunner}. */
export interface Runner {
  /** Runs a job to its end and reports its result. */
  run(job: Job): Promise<void>;
  /**
   * Starts getting a job's run dir (fetching the package once), ahead of its
   * turn, so that a freed slot spawns at once. False while the job must wait
   * for a uid of `--run-as-range` (every one is lent).
   */
  stage(job: Job): boolean;
  /** Forgets a job that will not run: its run dir, untouched, goes back. */
  drop(job: Job): void;
  /** Stops an instance's process tree: SIGTERM now, SIGKILL after the grace period. */
  kill(job: Job, why: string): void;
  /** Instances started so far. */
  started(): number;
}

/** Creates the node's instance runner. */
export function createRunner(deps: RunnerDeps): Runner {
  const { name, clock, log, io, cache, runDirs, spawner, runAs, taskUsers, resources, killGraceMs, report } = deps;
  let started = 0;
  const base = baseEnv(runAs);

  const stage = (job: Job): boolean => {
    if (job.staged) return true;
    job.user = taskUsers ? taskUsers.hold(job.ref.taskId) : runAs;
    if (job.user === null && taskUsers) return false;
    const user = job.user;
    // The package is held until the copy is made: the cache does not evict it meanwhile.
    job.staged = cache.acquire(job.digest as Digest, job.run.entrypoint).then(async (pkg) => {
      try {
        await (user as TaskUser | null)?.ready;
        return await runDirs.take(pkg.root, user);
      } finally {
        pkg.release();
      }
    });
    job.staged.catch(() => {}); // Reported when the job runs; a dropped job's failure does not matter.
    return true;
  };

  /** Takes back a job's run dir, then its hold on its task's uid. */
  const unstage = (job: Job, runDir: RunDir | undefined, reusable: boolean) => {
    if (runDir) runDirs.release(runDir, reusable);
    if (job.staged && taskUsers) taskUsers.unhold(job.ref.taskId);
  };

  const drop = (job: Job) =>
    void job.staged?.then((runDir) => unstage(job, runDir, true), () => unstage(job, undefined, false));

  // The rows of `[task] inputs`, parsed once per package while its instances run here (a few packages at most).
  const inputRows = new Map<string, Promise<InputRows>>();
  const rowsOf = (job: Job): Promise<InputRows> => {
    let rows = inputRows.get(job.digest);
    if (!rows) {
      if (inputRows.size >= 4) inputRows.delete(inputRows.keys().next().value!);
      rows = cache.acquire(job.digest as Digest, job.run.entrypoint).then(async (pkg) => {
        try {
          return await readInputsFile(pkg.root, job.run.inputs!);
        } finally {
          pkg.release();
        }
      });
      rows.catch(() => inputRows.delete(job.digest));
      inputRows.set(job.digest, rows);
    }
    return rows;
  };

  const killJob = (job: Job, why: string) => {
    // Its main process ended already: its exit stands (what it left behind is killed anyway).
    if (job.proc?.done) return;
    if (job.killed || !job.proc) {
      job.killed ??= why;
      return;
    }
    job.killed = why;
    const proc = job.proc;
    proc.kill("SIGTERM");
    const t = clock.setTimeout(() => proc.kill("SIGKILL"), killGraceMs);
    void proc.ended.finally(() => clock.clearTimeout(t));
  };

  async function runJob(job: Job): Promise<void> {
    const { ref, run } = job;
    const refs = refsOf(job);
    // A chunked task's instances always run as chunks (a retry as a chunk of one), so that they see one contract.
    const chunked = (run.chunk ?? 1) > 1;
    const startedAt = clock.now();
    const result = (fields: Partial<Result>, of: InstanceRef = ref): Result =>
      resultOf(of, { startedAt, endedAt: clock.now(), ...fields });
    // How a chunk ended is how each of its instances ended.
    const reportAll = (fields: Partial<Result>) => refs.forEach((r) => report(result(fields, r)));
    if (deps.noop) return reportAll({ exitCode: 0 });
    let chunkFile: string | undefined;
    let runDir: RunDir | undefined;
    let reusable = false;
    let instanceIo: InstanceIo | undefined;
    try {
      runDir = await job.staged!;
      reusable = true;
      if (job.killed) return reportAll({ error: job.killed });
      const dir = runDir.dir;
      try {
        instanceIo = await prepareInstanceIo(io, ref, run, dir, runDir.outputDir, job.user?.uid);
      } catch (e) {
        return reportAll({ error: `could not prepare data and outputs on ${name}: ${(e as Error).message}` });
      }
      if (job.killed) return reportAll({ error: job.killed });
      const user = job.user ?? null;
      const env = instanceEnv({ base, user, runAs, ref, run, ioEnv: instanceIo.env, node: name, dir });
      const rows = run.inputs && !instanceIo.finalize ? await rowsOf(job) : null;
      if (rows) Object.assign(env, inputEnv(rows, ref.index));
      if (chunked && !instanceIo.finalize) {
        chunkFile = `${dir}.chunk.jsonl`;
        Object.assign(env, await prepareChunk(run, refs, rows, chunkFile, runDir.outputDir, user));
      }
      let spawnedAt = 0;
      const output = attemptLog(deps.logs, { taskId: ref.taskId, index: ref.index, attempt: ref.attempt }, log);
      reusable = false;
      const hold = resources.hold(ref, run, env);
      try {
        // A command line runs through the shell, in the workdir like an entrypoint.
        const [program, args] = instanceIo.entrypoint === null
          ? [SHELL, ["-c", instanceIo.command ?? ""]]
          : [join(dir, instanceIo.entrypoint), instanceIo.args];
        const start = user ? asUser(user, program, args) : { command: program, args };
        log.step("node.spawn");
        spawnedAt = Date.now();
        job.proc = await spawner.start({
          ...start,
          cwd: join(dir, run.workdir),
          env,
          stdoutPath: runDir.stdoutPath,
          stderrPath: runDir.stderrPath,
          onOutput: output.onOutput,
        });
      } catch (e) {
        hold.end(null);
        // A script the system cannot start is named with its cause and fix (no '#!' line, CRLF line ends).
        const what = instanceIo.entrypoint ?? SHELL;
        const head = instanceIo.entrypoint === null ? null : await readHead(join(dir, instanceIo.entrypoint));
        const why = (head && entrypointProblem(what, head)) ?? (e as Error).message;
        return reportAll({ error: `cannot start '${what}': ${why}` });
      }
      const proc = job.proc;
      hold.started(proc.pid, (why) => {
        // Like the kernel's out-of-memory killer: no grace.
        job.killed ??= why;
        proc.kill("SIGKILL");
      });
      started++;
      if (job.killed) killJob(job, job.killed);
      // A timer that fires after the main process ended kills nothing (killJob: proc.done). A chunk has the
      // timeout of each of its instances, one after the other.
      const timeoutMs = run.timeoutMs === null ? null : run.timeoutMs * refs.length;
      const timeout = timeoutMs === null
        ? undefined
        : clock.setTimeout(() => killJob(job, `timed out after ${formatDurationMs(timeoutMs)}`), timeoutMs);
      const status = await job.proc.ended;
      const used = hold.end(status.usage);
      log.step("node.ended");
      if (timeout !== undefined) clock.clearTimeout(timeout);
      await output.sent();
      reusable = !job.killed && !status.leftovers && !instanceIo.finalize;
      // Outputs are stored before the result is sent: a result means its outputs are in the workspace. Also
      // while the node stops: what finishes within the grace period counts, so its outputs must be in.
      let outputBytes = refs.map(() => 0);
      let error = job.killed ?? used.memoryError;
      if (!job.killed?.startsWith("stale")) {
        try {
          // Retried through a NATS restart or a stream leader election, like log chunks.
          outputBytes = await publishRetrying(async () =>
            chunkFile
              ? await storeChunkOutputs(io.workspace, refs, runDir!.outputDir, job.user?.uid)
              : [await instanceIo!.storeOutputs()]
          );
        } catch (e) {
          error ??= `could not store outputs from ${name}: ${(e as Error).message}`;
        }
      }
      // An empty file under $PARALLELIC_OUTPUT stores 0 bytes, yet it was written where it should be. A copy
      // found untouched (a few statx calls) wrote nothing anywhere: no walk of its workdir needed.
      const hint = outputBytes.some((b) => b > 0) || (reusable && runDirs.unchanged(runDir)) ||
          (!chunkFile && !isEmptyDir(runDir.outputDir))
        ? null
        : await hintFor(cache, log, job, join(dir, run.workdir), spawnedAt);
      // The log and the process's usage are the first instance's: counted once. Its last stderr line says
      // why each failed.
      const lastStderr = output.lastStderr();
      refs.forEach((r, i) =>
        report(result({
          exitCode: status.code,
          signal: status.signal,
          error,
          outputBytes: outputBytes[i] ?? 0,
          logBytes: i === 0 ? output.bytes() : 0,
          ...(i === 0 ? { cpuMs: used.cpuMs, maxRssBytes: used.maxRssBytes } : {}),
          lastStderr,
          ...(hint ? { hint } : {}),
        }, r))
      );
    } catch (e) {
      // The node's trouble (NATS, the package): requeued without using up a retry, a few times.
      reportAll({ error: `node ${name} could not run it: ${(e as Error).message}`, lost: true });
    } finally {
      await instanceIo?.cleanup();
      if (chunkFile) await Deno.remove(chunkFile).catch(() => {});
      // Kept for another instance when untouched, else removed (meanwhile: the result is reported already).
      unstage(job, runDir, reusable);
    }
  }

  return { run: runJob, stage, drop, kill: killJob, started: () => started };
}

/**
 * The hint for a job that stored no outputs (see `output_hint.ts`): the files it wrote in `workdir` since
 * `sinceMs` that are not the package's (held in `cache`), or null.
 */
async function hintFor(
  cache: PackageCache,
  log: Logger,
  job: Job,
  workdir: string,
  sinceMs: number,
): Promise<string | null> {
  try {
    const pkg = await cache.acquire(job.digest as Digest, job.run.entrypoint);
    try {
      return outputHint(await filesWrittenSince(workdir, sinceMs, pkg.root, job.run.outputs));
    } finally {
      pkg.release();
    }
  } catch (e) {
    log.warn("node:output-hint-failed", { taskId: job.ref.taskId, error: (e as Error).message });
    return null;
  }
}

/** The first bytes of a file, or none when it cannot be read. */
async function readHead(path: string): Promise<Uint8Array> {
  try {
    using file = await Deno.open(path);
    const buf = new Uint8Array(256);
    const n = await file.read(buf);
    return buf.subarray(0, n ?? 0);
  } catch {
    return new Uint8Array();
  }
}
