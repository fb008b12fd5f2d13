/**
 * The few C library calls the node makes through Deno's FFI (Linux, glibc
 * 2.34 or later): `posix_spawn` with the instance's output going straight into
 * files and the instance in a process group of its own, `waitpid` on a
 * thread of Deno's pool, `kill` of a process group, and `statx`/`utimensat`
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
  /** Waits (on a thread of the pool) until the process `pid` ends, and reaps it. */
  wait(pid: number): Promise<ExitStatus>;
  /** Sends `signal` to every process of group `pgid`; false when there is none. */
  killGroup(pgid: number, signal: Deno.Signal | 0): boolean;
  /** Metadata of `path` itself (symlinks are not followed), with nanoseconds; null when it is gone. */
  stamp(path: string): FileStamp | null;
  /** Sets the modification time of `path` itself (atime untouched). */
  setMtime(path: string, sec: bigint, ns: number): void;
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
  waitpid: { parameters: ["i32", "buffer", "i32"], result: "i32", nonblocking: true },
  kill: { parameters: ["i32", "i32"], result: "i32" },
  statx: { parameters: ["i32", "buffer", "i32", "u32", "buffer"], result: "i32" },
  utimensat: { parameters: ["i32", "buffer", "buffer", "i32"], result: "i32" },
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
        c.posix_spawn_file_actions_addopen(actions, 1, cString(request.stdoutPath), O_WRONLY_CREAT_TRUNC, 0o600);
        c.posix_spawn_file_actions_addopen(actions, 2, cString(request.stderrPath), O_WRONLY_CREAT_TRUNC, 0o600);
        c.posix_spawn_file_actions_addchdir_np(actions, cString(request.cwd));
        c.posix_spawn_file_actions_addclosefrom_np(actions, 3);
        // The p variant looks a bare command name (setpriv) up in the node's PATH, like Deno.Command.
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

    async wait(pid) {
      const status = new Int32Array(32);
      for (;;) {
        const r = await c.waitpid(pid, status, 0);
        if (r === pid) break;
        if (r === -1) {
          // EINTR, or ECHILD when someone else reaped it: the status is then lost.
          if (c.kill(pid, 0) === 0) continue;
          return { code: null, signal: null };
        }
      }
      const s = status[0];
      if ((s & 0x7f) === 0) return { code: (s >> 8) & 0xff, signal: null };
      return { code: null, signal: SIGNALS[s & 0x7f] ?? "SIGKILL" };
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
        size: v.getBigUint64(40, true),
        mtimeSec: v.getBigInt64(112, true),
        mtimeNs: v.getUint32(120, true),
      };
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
