/**
 * Killing an instance's whole process tree, found through /proc: all of it
 * for the `Deno.Command` spawner (a detached child would cost 1.5 ms more per
 * process), and the descendants that left the instance's process group for
 * the `posix_spawn` one.
 *
 * @module
 */

/** Returns `pid` and all its descendants, found through /proc (parents first). */
function processTree(pid: number): number[] {
  const children = new Map<number, number[]>();
  try {
    for (const entry of Deno.readDirSync("/proc")) {
      if (!/^\d+$/.test(entry.name)) continue;
      try {
        const stat = Deno.readTextFileSync(`/proc/${entry.name}/stat`);
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        const ppid = Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]);
        const list = children.get(ppid);
        if (list) list.push(Number(entry.name));
        else children.set(ppid, [Number(entry.name)]);
      } catch { /* exited meanwhile */ }
    }
  } catch {
    return [pid];
  }
  const tree = [pid];
  for (let i = 0; i < tree.length; i++) tree.push(...(children.get(tree[i]) ?? []));
  return tree;
}

/** Sends `signal` to every process in `pids`, ignoring those already gone. */
function signalAll(pids: number[], signal: Deno.Signal): void {
  for (const pid of pids) {
    try {
      Deno.kill(pid, signal);
    } catch { /* gone */ }
  }
}

/**
 * The kills of one process: each signals the tree found now (while its main
 * process lives) and every process found before; `finish()`, once the main
 * process has ended, gives SIGKILL to what earlier kills found beside it
 * (orphans re-parent away from its tree, so they are found no more).
 */
export function treeKills(pid: number): { signal(signal: Deno.Signal, alive: boolean): void; finish(): void } {
  const known = new Set<number>();
  return {
    signal(signal, alive) {
      if (alive) { for (const p of processTree(pid)) known.add(p); }
      signalAll([...known], signal);
    },
    finish() {
      known.delete(pid);
      if (known.size) signalAll([...known], "SIGKILL");
    },
  };
}
