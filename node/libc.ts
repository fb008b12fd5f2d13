/**
 * The few C library calls the node makes through Deno's FFI (Linux, glibc
 * 2.34 or later): `posix_spawn` with the instance's output going straight into
 * files and the instance in a process group of its own, `waitid` when
 * SIGCHLD arrives (no thread waits per process), `kill` of a process group,
 * and `statx`/`utimensat`
 * with nanoseconds for telling whether an instance left its copy of the task
 * root untouched.
 *
 * `Deno.Command` with piped output costs the node's main thread about 0.4 ms
 * per process here (the spawn, and two pipes read to their end); this costs
 * 0.15 ms. Where the library cannot be loaded (another OS or C library, or
 * no `--allow-ffi`), {@linkcode loadLibc} returns null and the node uses
 * `Deno.Command`.
 *
 * @module
 */

/** What a process ended with: an exit code, or the signal that ended it. */
export interface ExitStatus {
  code: number | null;
  signal: Deno.Signal | null;
}

/** What a reaped child and the descendants it waited for used. */
export interface ChildUsage {
  /** User + system CPU time, ms. */
  cpuMs: number;
  /** The largest resident set of any one of them, bytes. */
  maxRssBytes: number;
}

/** How to start a process with {@linkcode Libc.spawn}. */
export interface SpawnRequest {
  /** Path of the executable. */
  command: string;
  args: string[];
  cwd: string;
  /** The whole environment (nothing is inherited). */
  env: Record<string, string>;
  /** Files (created or truncated) taking standard output and standard error. */
  stdoutPath: string;
  stderrPath: string;
}

/** A file's identity and the parts of its metadata that writes change. */
export interface FileStamp {
  ino: bigint;
  mode: number;
  /** The status change time: set by the kernel on every change, never by a process. */
  ctimeSec: bigint;
  ctimeNs: number;
  uid: number;
  gid: number;
  nlink: number;
  size: bigint;
  mtimeSec: bigint;
  mtimeNs: number;
}

/** The calls {@linkcode loadLibc} offers. */
export interface Libc {
  /**
   * Starts a process in a process group of its own (its pid is the group's
   * id), standard input from /dev/null, no other descriptor inherited,
   * signals at their defaults. Returns its pid.
   *
   * @throws {Deno.errors.NotFound | Error} With the C library's reason, as `Deno.Command` words it.
   */
  spawn(request: SpawnRequest): Promise<number>;
  /**
   * Resolves when the child `pid` has ended. It is not reaped: until
   * {@linkcode Libc.reap}, its pid (and so its process group's id) cannot be
   * given to another process, so signals sent meanwhile reach only its group.
   */
  exited(pid: number): Promise<ExitStatus>;
  /**
   * Reaps an ended child (after {@linkcode Libc.exited} resolved) and returns
   * what it and the descendants it waited for used (`wait4`'s rusage).
   */
  reap(pid: number): ChildUsage;
  /** Sends `signal` to every process of group `pgid`; false when there is none. */
  killGroup(pgid: number, signal: Deno.Signal | 0): boolean;
  /** Metadata of `path` itself (symlinks are not followed), with nanoseconds; null when it is gone. */
  stamp(path: string): FileStamp | null;
  /** Sets the modification time of `path` itself (atime untouched). */
  setMtime(path: string, sec: bigint, ns: number): void;
  /** Clock ticks since boot (`CLOCK_BOOTTIME`), as /proc/PID/stat counts a process's start time. */
  bootTicks(): number;
}

const SIGNALS: Record<number, Deno.Signal> = {
  1: "SIGHUP",
  2: "SIGINT",
  3: "SIGQUIT",
  4: "SIGILL",
  5: "SIGTRAP",
  6: "SIGABRT",
  7: "SIGBUS",
  8: "SIGFPE",
  9: "SIGKILL",
  10: "SIGUSR1",
  11: "SIGSEGV",
  12: "SIGUSR2",
  13: "SIGPIPE",
  14: "SIGALRM",
  15: "SIGTERM",
  16: "SIGSTKFLT",
  17: "SIGCHLD",
  18: "SIGCONT",
  19: "SIGSTOP",
  20: "SIGTSTP",
  21: "SIGTTIN",
  22: "SIGTTOU",
  23: "SIGURG",
  24: "SIGXCPU",
  25: "SIGXFSZ",
  26: "SIGVTALRM",
  27: "SIGPROF",
  28: "SIGWINCH",
  29: "SIGIO",
  30: "SIGPWR",
  31: "SIGSYS",
};
const SIGNAL_NUMBERS = Object.fromEntries(Object.entries(SIGNALS).map(([n, s]) => [s, Number(n)]));

/** errno values posix_spawn returns, worded as Deno words them. */
const ERRORS: Record<number, string> = {
  1: "Operation not permitted (os error 1)",
  2: "No such file or directory (os error 2)",
  8: "Exec format error (os error 8)",
  12: "Cannot allocate memory (os error 12)",
  13: "Permission denied (os error 13)",
  20: "Not a directory (os error 20)",
  26: "Text file busy (os error 26)",
};

// glibc's values (x86_64 and aarch64 alike).
const POSIX_SPAWN_SETPGROUP = 0x02;
const POSIX_SPAWN_SETSIGDEF = 0x04;
const POSIX_SPAWN_SETSIGMASK = 0x08;
const O_WRONLY_CREAT_TRUNC = 0o1101;
const AT_FDCWD = -100;
const AT_SYMLINK_NOFOLLOW = 0x100;
const STATX_BASIC = 0x7ff;
const UTIME_OMIT = (1 << 30) - 2;
const P_PID = 1;
const WNOHANG = 1;
const WEXITED = 4;
const WNOWAIT = 0x01000000;
const CLD_EXITED = 1;
const CLOCK_BOOTTIME = 7;
/** Nanoseconds per clock tick of /proc (USER_HZ is 100 on every Linux architecture). */
const NS_PER_TICK = 10_000_000n;
/**
 * Children waited for on a thread each (a blocking `waitid`); more are
 * watched through SIGCHLD, which costs the node about 40 µs more per process
 * but no thread (Deno's pool has 32, which file operations need too).
 */
const THREAD_WAITS = 16;

const SYMBOLS = {
  posix_spawnp: {
    parameters: ["buffer", "buffer", "buffer", "buffer", "pointer", "pointer"],
    result: "i32",
    nonblocking: true,
  },
  posix_spawnattr_init: { parameters: ["buffer"], result: "i32" },
  posix_spawnattr_setflags: { parameters: ["buffer", "i16"], result: "i32" },
  posix_spawnattr_setpgroup: { parameters: ["buffer", "i32"], result: "i32" },
  posix_spawnattr_setsigmask: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawnattr_setsigdefault: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_destroy: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_addopen: { parameters: ["buffer", "i32", "buffer", "i32", "u32"], result: "i32" },
  posix_spawn_file_actions_addchdir_np: { parameters: ["buffer", "buffer"], result: "i32" },
  posix_spawn_file_actions_addclosefrom_np: { parameters: ["buffer", "i32"], result: "i32" },
  wait4: { parameters: ["i32", "buffer", "i32", "buffer"], result: "i32" },
  waitid: { parameters: ["i32", "i32", "buffer", "i32"], result: "i32" },
  waitid_blocking: { name: "waitid", parameters: ["i32", "i32", "buffer", "i32"], result: "i32", nonblocking: true },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
  clock_gettime: { parameters: ["i32", "buffer"], result: "i32" },
} as const;

const encoder = new TextEncoder();

/**
 * A NUL-terminated copy of `s`. Buffers handed to C are at least 128 bytes:
 * V8 keeps smaller typed arrays on its heap, where the garbage collector may
 * move them.
 */
const cString = (s: string): Uint8Array => {
  const bytes = new Uint8Array(Math.max(128, s.length * 3 + 1));
  encoder.encodeInto(s, bytes);
  return bytes;
};

/** C strings of paths checked again and again (run dirs are reused), encoded once. */
const pathCache = new Map<string, Uint8Array>();
const cPath = (path: string): Uint8Array => {
  let c = pathCache.get(path);
  if (!c) {
    if (pathCache.size >= 4096) pathCache.clear();
    pathCache.set(path, c = cString(path));
  }
  return c;
};

let loaded: Libc | null | undefined;

/** Loads the C library once; null where it is not glibc 2.34+ on Linux, or FFI is not allowed. */
export function loadLibc(): Libc | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (Deno.build.os !== "linux" || Deno.env.get("PARALLELIC_SPAWNER") === "deno") return null;
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch {
    return null; // Not glibc, glibc older than 2.34 (no addclosefrom_np), or FFI not allowed.
  }
  const c = lib.symbols;
  // One attribute set serves every spawn: own process group, no blocked signals, every signal at its default
  // (Deno ignores SIGPIPE, and ignored signals would otherwise stay ignored across exec).
  const attr = new Uint8Array(1024);
  const noSignals = new Uint8Array(128);
  const allSignals = new Uint8Array(128).fill(0xff);
  c.posix_spawnattr_init(attr);
  c.posix_spawnattr_setflags(attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);
  c.posix_spawnattr_setpgroup(attr, 0);
  c.posix_spawnattr_setsigmask(attr, noSignals);
  c.posix_spawnattr_setsigdefault(attr, allSignals);
  const devNull = cString("/dev/null");
  /** How an ended child ended, from its siginfo_t: si_code at 8, si_status at 24. */
  const decodeInfo = (v: DataView): ExitStatus => {
    const status = v.getInt32(24, true);
    return v.getInt32(8, true) === CLD_EXITED
      ? { code: status, signal: null }
      : { code: null, signal: SIGNALS[status] ?? "SIGKILL" };
  };
  let threadWaits = 0;
  // Children beyond THREAD_WAITS (see exited()), checked with waitid(WNOHANG | WNOWAIT) on every SIGCHLD.
  const watched = new Map<number, (status: ExitStatus) => void>();
  const info = new Uint8Array(128); // siginfo_t
  const infoView = new DataView(info.buffer);
  const waitStatus = new Int32Array(32);
  // struct rusage: ru_utime and ru_stime (timeval: seconds, microseconds), then ru_maxrss in KiB.
  const rusage = new BigInt64Array(32);
  let pollTimer: ReturnType<typeof setInterval> | undefined;
  const checkChildren = () => {
    for (const [pid, resolve] of watched) {
      info.fill(0);
      const r = c.waitid(P_PID, pid, info, WEXITED | WNOHANG | WNOWAIT);
      // si_pid (offset 16) stays 0 while the child runs; -1 is ECHILD (someone else reaped it: status lost).
      if (r === 0 && infoView.getInt32(16, true) !== pid) continue;
      watched.delete(pid);
      resolve(r === 0 ? decodeInfo(infoView) : { code: null, signal: null });
    }
    if (watched.size === 0 && pollTimer !== undefined) Deno.unrefTimer(pollTimer);
  };
  const timespec = new BigInt64Array(16);
  const timespecBytes = new Uint8Array(timespec.buffer);
  // statx is called synchronously: one result buffer serves every call.
  const statxBuf = new Uint8Array(256);
  const statxView = new DataView(statxBuf.buffer);

  loaded = {
    async spawn(request) {
      const strings = [request.command, ...request.args];
      const argc = strings.length;
      for (const k in request.env) strings.push(`${k}=${request.env[k]}`);
      // All strings in one buffer (UTF-8 takes at most 3 bytes per UTF-16 unit), and the two NULL-terminated
      // pointer arrays in another.
      let size = 0;
      for (const s of strings) size += s.length * 3 + 1;
      const bytes = new Uint8Array(Math.max(128, size));
      const pointers = new BigUint64Array(Math.max(16, strings.length + 2));
      const base = BigInt(Deno.UnsafePointer.value(Deno.UnsafePointer.of(bytes)));
      let offset = 0;
      strings.forEach((s, i) => {
        pointers[i < argc ? i : i + 1] = base + BigInt(offset);
        offset += encoder.encodeInto(s, bytes.subarray(offset)).written + 1;
      });
      pointers[argc] = 0n;
      pointers[strings.length + 1] = 0n;
      const argv = Deno.UnsafePointer.of(pointers);
      const envp = Deno.UnsafePointer.offset(argv!, (argc + 1) * 8);
      const actions = new Uint8Array(1024);
      const pid = new Int32Array(32);
      const path = bytes; // The command is the first string.
      c.posix_spawn_file_actions_init(actions);
      try {
        c.posix_spawn_file_actions_addopen(actions, 0, devNull, 0, 0);
        // Reused run dirs give the same paths again: encoded once (glibc copies them into the actions).
        c.posix_spawn_file_actions_addopen(actions, 1, cPath(request.stdoutPath), O_WRONLY_CREAT_TRUNC, 0o600);
        c.posix_spawn_file_actions_addopen(actions, 2, cPath(request.stderrPath), O_WRONLY_CREAT_TRUNC, 0o600);
        c.posix_spawn_file_actions_addchdir_np(actions, cPath(request.cwd));
        c.posix_spawn_file_actions_addclosefrom_np(actions, 3);
        // Commands are absolute paths (the entrypoint, setpriv); the p variant would look a bare name up in the
        // node's PATH, never in the instance's.
        const errno = await c.posix_spawnp(pid, path, actions, attr, argv, envp);
        if (errno !== 0) {
          const message = ERRORS[errno] ?? `os error ${errno}`;
          throw errno === 2 ? new Deno.errors.NotFound(message) : new Error(message);
        }
        return pid[0];
      } finally {
        c.posix_spawn_file_actions_destroy(actions);
        // Keep the buffers alive until posix_spawn has returned.
        void [bytes, pointers];
      }
    },

    exited(pid) {
      if (threadWaits < THREAD_WAITS) {
        // A thread of Deno's pool waits for it (the pool has 32; the rest are watched through SIGCHLD).
        threadWaits++;
        const buf = new Uint8Array(128);
        return c.waitid_blocking(P_PID, pid, buf, WEXITED | WNOWAIT).then((r) => {
          threadWaits--;
          return r === 0 ? decodeInfo(new DataView(buf.buffer)) : { code: null, signal: null };
        });
      }
      return new Promise<ExitStatus>((resolve) => {
        if (pollTimer === undefined) {
          Deno.addSignalListener("SIGCHLD", checkChildren);
          // Signals can coalesce or come before a pid is watched: a slow poll too. It keeps the event loop
          // alive only while children are watched.
          pollTimer = setInterval(checkChildren, 100);
        }
        if (watched.size === 0) Deno.refTimer(pollTimer!);
        watched.set(pid, resolve);
        checkChildren(); // It may have ended already.
      });
    },

    reap(pid) {
      rusage.fill(0n);
      c.wait4(pid, waitStatus, WNOHANG, new Uint8Array(rusage.buffer));
      const [uSec, uUsec, sSec, sUsec, maxRssKiB] = rusage;
      return {
        cpuMs: Math.round(Number((uSec + sSec) * 1000n) + Number(uUsec + sUsec) / 1000),
        maxRssBytes: Number(maxRssKiB) * 1024,
      };
    },

    killGroup(pgid, signal) {
      return c.kill(-pgid, signal === 0 ? 0 : SIGNAL_NUMBERS[signal]) === 0;
    },

    stamp(path) {
      if (c.statx(AT_FDCWD, cPath(path), AT_SYMLINK_NOFOLLOW, STATX_BASIC, statxBuf) !== 0) return null;
      const v = statxView;
      return {
        nlink: v.getUint32(16, true),
        uid: v.getUint32(20, true),
        gid: v.getUint32(24, true),
        mode: v.getUint16(28, true),
        ino: v.getBigUint64(32, true),
        ctimeSec: v.getBigInt64(96, true),
        ctimeNs: v.getUint32(104, true),
        size: v.getBigUint64(40, true),
        mtimeSec: v.getBigInt64(112, true),
        mtimeNs: v.getUint32(120, true),
      };
    },

    bootTicks() {
      c.clock_gettime(CLOCK_BOOTTIME, timespecBytes);
      // As the kernel turns a start time into ticks: rounded down.
      return Number((timespec[0] * 1_000_000_000n + timespec[1]) / NS_PER_TICK);
    },

    setMtime(path, sec, ns) {
      const times = new BigInt64Array(16);
      times[1] = BigInt(UTIME_OMIT);
      times[2] = sec;
      times[3] = BigInt(ns);
      if (c.utimensat(AT_FDCWD, cPath(path), new Uint8Array(times.buffer), AT_SYMLINK_NOFOLLOW) !== 0) {
        throw new Error(`Cannot set the modification time of '${path}'`);
      }
    },
  };
  return loaded;
}
