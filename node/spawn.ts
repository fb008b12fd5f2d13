/**
 * Starting an instance's process and following its output, two ways with
 * one face: through {@linkcode Libc} (`posix_spawn`, output into files that
 * are read as they grow, the instance in a process group of its own), or
 * through `Deno.Command` with piped output where the C library cannot be
 * loaded.
 *
 * @module
 */
import type { Clock, TimerId } from "../core/clock.ts";
import type { ChildUsage, ExitStatus, Libc, SpawnRequest } from "./libc.ts";
import type { ProcessLedger } from "./leftovers.ts";
import { treeKills } from "./process_tree.ts";

export type { ExitStatus } from "./libc.ts";

/** Which of the two output streams a chunk came from. */
export type OutputStream = "stdout" | "stderr";

/** How to start an instance's process (the output files are used by C library spawns only). */
export interface ProcessRequest extends SpawnRequest {
  /** Called with each chunk of output, in order per stream; awaited before the next is read. */
  onOutput: (chunk: Uint8Array, stream: OutputStream) => void | Promise<void>;
}

/** A started instance process. */
export interface InstanceProcess {
  /** The main process's pid (and its process group's id, for C library spawns). */
  readonly pid: number;
  /** Resolves when the main process has ended (its output may still be being read). */
  readonly exited: Promise<ExitStatus>;
  /** True once `exited` has resolved. */
  readonly done: boolean;
  /**
   * Resolves when the main process has ended and its output has been read
   * to the end. Processes it left behind are killed then; `leftovers` says
   * whether there were any; `usage`, what the main process and the
   * descendants it waited for used (C library spawns only).
   */
  readonly ended: Promise<ExitStatus & { leftovers: boolean; usage: ChildUsage | null }>;
  /**
   * Sends `signal` to the process, its process group and every descendant
   * found; after the main process has ended, what the first kill found and
   * is still alive gets SIGKILL. Does nothing once it ended.
   */
  kill(signal: Deno.Signal): void;
}

/** Options of {@linkcode createSpawner}. */
export interface SpawnerOptions {
  /** The C library, or null to use `Deno.Command`. */
  libc: Libc | null;
  clock: Clock;
  /** How often the output files of a running instance are read (C library spawns). */
  outputPollMs?: number;
  /** Where running processes are written down, for the next start after a crash (see `leftovers.ts`). */
  ledger?: ProcessLedger;
}

/** Starts instance processes. */
export interface Spawner {
  /** "posix_spawn" or "Deno.Command". */
  readonly kind: string;
  /**
   * Starts a process, retrying a moment later when its executable is still
   * busy ("Text file busy": a copy of it just written can be open in a
   * process forked meanwhile, until that one execs).
   */
  start(request: ProcessRequest): Promise<InstanceProcess>;
}

const CHUNK_BYTES = 64 * 1024;

const retryBusy = async <T>(fn: () => Promise<T> | T, tries = 6): Promise<T> => {
  for (let i = 0;; i++) {
    try {
      return await fn();
    } catch (e) {
      if (i + 1 >= tries || !/Text file busy|os error 26/.test(String((e as Error).message))) throw e;
      await new Promise((r) => setTimeout(r, 2 ** i));
    }
  }
};

/** Creates a spawner: through the C library when given one, else through `Deno.Command`. */
export function createSpawner(options: SpawnerOptions): Spawner {
  const { libc, clock, ledger } = options;
  const pollMs = options.outputPollMs ?? 100;

  if (!libc) {
    return {
      kind: "Deno.Command",
      async start(request) {
        const child = await retryBusy(() =>
          new Deno.Command(request.command, {
            args: request.args,
            cwd: request.cwd,
            env: request.env,
            clearEnv: true,
            stdin: "null",
            stdout: "piped",
            stderr: "piped",
          }).spawn()
        );
        const pipe = async (stream: ReadableStream<Uint8Array>, which: OutputStream) => {
          for await (const chunk of stream) await request.onOutput(chunk, which);
        };
        let done = false;
        ledger?.started(child.pid);
        const kills = treeKills(child.pid);
        const exited = child.status.then((status) => {
          done = true;
          kills.finish();
          ledger?.ended(child.pid);
          return { code: status.signal ? null : status.code, signal: status.signal ?? null };
        });
        const ended = Promise.all([exited, pipe(child.stdout, "stdout"), pipe(child.stderr, "stderr")]).then((
          [status],
        ) => ({ ...status, leftovers: false, usage: null }));
        return {
          pid: child.pid,
          exited,
          get done() {
            return done;
          },
          ended,
          kill(signal) {
            if (!done) kills.signal(signal, true);
          },
        };
      },
    };
  }

  // One timer reads the output of every running instance every pollMs (a timer per instance cost ~25 µs each).
  const followers = new Set<() => void>();
  let poller: TimerId | undefined;
  // It stops by itself once nothing runs (not at every instance's end: short instances would make a timer each).
  const poll = () => {
    for (const f of followers) f();
    poller = followers.size > 0 ? clock.setTimeout(poll, pollMs) : undefined;
  };
  const startPoller = () => poller ??= clock.setTimeout(poll, pollMs);

  /** Reads what the output files hold beyond what was read, in chunks. */
  const readNew = async (path: string, offset: number, which: OutputStream, request: ProcessRequest) => {
    const size = Number(libc.stamp(path)?.size ?? 0);
    if (size <= offset) return offset;
    using file = Deno.openSync(path, { read: true });
    file.seekSync(offset, Deno.SeekMode.Start);
    while (offset < size) {
      const buf = new Uint8Array(Math.min(CHUNK_BYTES, size - offset));
      const n = file.readSync(buf);
      if (!n) break;
      offset += n;
      await request.onOutput(n === buf.length ? buf : buf.subarray(0, n), which);
    }
    return offset;
  };

  return {
    kind: "posix_spawn",
    async start(request) {
      // Its start time lies between these two readings: no /proc read needed to write it down.
      const before = libc.bootTicks();
      const pid = await retryBusy(() => libc.spawn(request));
      ledger?.started(pid, [before, libc.bootTicks()]);
      let done = false;
      let reaped = false;
      const kills = treeKills(pid);
      const exited = libc.exited(pid).then((status) => {
        done = true;
        return status;
      });
      // Read while it runs by the node's one poller, and to the end once it has ended.
      let out = 0;
      let err = 0;
      let reading: Promise<void> = Promise.resolve();
      const read = () =>
        reading = reading.then(async () => {
          out = await readNew(request.stdoutPath, out, "stdout", request);
          err = await readNew(request.stderrPath, err, "stderr", request);
        });
      const follower = () => void read();
      followers.add(follower);
      if (followers.size === 1) startPoller();
      const follow = async () => {
        await exited;
        followers.delete(follower);
        await read();
      };
      const ended = Promise.all([exited, follow()]).then(([status]) => {
        // Reaped only now: until here its pid, the group's id, could not be reused, so kills reached only its group.
        const usage = libc.reap(pid);
        reaped = true;
        // What the instance left in its process group goes with it, and what a kill found outside the group.
        const leftovers = libc.killGroup(pid, 0);
        if (leftovers) libc.killGroup(pid, "SIGKILL");
        kills.finish();
        ledger?.ended(pid);
        return { ...status, leftovers, usage };
      });
      return {
        pid,
        exited,
        get done() {
          return done;
        },
        ended,
        kill(signal) {
          if (reaped) return;
          libc.killGroup(pid, signal);
          // Descendants that left the group (setsid, setpgid) are found through /proc while the main process lives.
          kills.signal(signal, !done);
        },
      };
    },
  };
}
