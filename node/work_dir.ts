/**
 * The node's work dir, made ready at start: the package cache, instance run
 * dirs, the data cache, the upstream cache, the uids of `--run-as-range`,
 * and the buckets instances read and write through the manager's object
 * service. Who may pass through or list each folder is decided here.
 *
 * @module
 */
import { join } from "node:path";
import type { Bus } from "../core/bus.ts";
import type { Clock } from "../core/clock.ts";
import type { Logger } from "../core/log.ts";
import type { ObjectAccess } from "../core/objects.ts";
import type { NodeOptions } from "./agent.ts";
import { createPackageCache } from "./cache.ts";
import { createCacheBudget } from "./cache_budget.ts";
import { createDataCache } from "./data_cache.ts";
import { createProcessLedger } from "./leftovers.ts";
import { loadLibc } from "./libc.ts";
import { removeTree } from "./readonly.ts";
import { remoteBucket } from "./remote_bucket.ts";
import { checkReachable, type RunAs } from "./run_as.ts";
import { createRunDirs } from "./run_dirs.ts";
import { createSpawner } from "./spawn.ts";
import { createTaskUsers, probeUser, type ResolvedRange } from "./task_users.ts";
import { createUpstreamCache } from "./upstream.ts";

/**
 * Makes the node's work dir ready (the package cache, instance run dirs, the data cache, the uids of
 * `--run-as-range`) and the buckets instances read and write, through the manager.
 */
export async function prepareWorkDir(
  options: NodeOptions,
  bus: Bus,
  name: string,
  slots: number,
  users: { runAs: RunAs | null; range: ResolvedRange | null; onFree: () => void },
  clock: Clock,
  log: Logger,
) {
  const { runAs, range } = users;
  // Objects come and go through the manager's object service, which checks them against this node's assignments.
  const buckets = {
    packages: remoteBucket(bus, name, "packages"),
    data: remoteBucket(bus, name, "data"),
    workspace: remoteBucket(bus, name, "workspace"),
  };
  const opened = (bucket: ObjectAccess) => () => Promise.resolve(bucket);
  const packagesDir = join(options.workDir, "packages");
  const runsDir = join(options.workDir, "runs");
  // A run cut short may have left a read-only finalize workspace behind.
  await removeTree(runsDir);
  await Deno.mkdir(packagesDir, { recursive: true });
  await Deno.mkdir(runsDir, { recursive: true });
  // The package cache is the node's alone; instances get copies. Runs may be passed through, not listed.
  await Deno.chmod(packagesDir, 0o700);
  await Deno.chmod(runsDir, 0o711);
  // Instances of another user may pass through the work dir, not list it.
  if (runAs || range) await Deno.chmod(options.workDir, 0o711);
  if (runAs) await checkReachable(runAs, runsDir);
  if (range) await checkReachable(probeUser(range), runsDir);
  // Packages and data sets share --cache-size: what is least recently used and idle goes first, either kind.
  const budget = createCacheBudget(options.cacheBytes ?? 10 * 2 ** 30);
  const cache = await createPackageCache(packagesDir, opened(buckets.packages), budget);
  const libc = loadLibc();
  const spawner = createSpawner({ libc, clock, ledger: createProcessLedger(join(options.workDir, "pids")) });
  const runDirs = createRunDirs({ dir: runsDir, libc, runAs, spare: 2 * slots + 2, log });
  const taskUsers = range && createTaskUsers({
    range,
    runsDir,
    onReturn: (user) => runDirs.forget(user.dir!),
    onFree: users.onFree,
    log,
  });
  await taskUsers?.sweep();
  log.debug("node:spawner", { kind: spawner.kind });
  const io = {
    data: await createDataCache({
      dir: join(options.workDir, "data"),
      capBytes: budget.capBytes,
      budget,
      bucket: opened(buckets.data),
      log,
    }),
    workspace: opened(buckets.workspace),
    upstream: createUpstreamCache(join(options.workDir, "upstream"), opened(buckets.workspace), log),
    log,
  };
  // Instances reach the data set versions they are given; they may not list what others use.
  await Deno.chmod(join(options.workDir, "data"), 0o711);

  return { cache, spawner, runDirs, io, taskUsers };
}
