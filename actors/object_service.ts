/**
 * The object service: nodes reach the object store only through it, on
 * their own subjects (`parallelic.node.<name>.objects.read|write`), and it
 * checks every call against what the node holds now (the rules are
 * `actors/object_access.ts`). A stolen node key therefore reads and writes
 * no more than the node's own assignments, and no JetStream API is in a
 * node's permissions.
 *
 * Content travels in pieces of at most {@linkcode OBJECT_PIECE_BYTES}; a
 * read or a write in progress is a session, ended by its last piece, by the
 * node (`close`, `abort`: its reader gave up), or after a minute without a
 * request. What all read sessions hold ahead of their nodes shares one
 * budget (`readBudgetBytes`): past it, reads wait for others to drain.
 * Reads are `actors/object_reads.ts`, writes `actors/object_writes.ts`.
 *
 * @module
 */
import type { Bus } from "../core/bus.ts";
import { type ByteBudget, createByteBudget } from "../core/byte_budget.ts";
import type { Logger } from "../core/log.ts";
import type { Bucket } from "../core/objects.ts";
import { DATA_BUCKET, PACKAGE_BUCKET, WORKSPACE_BUCKET } from "../core/schema.ts";
import { nodeObjectsReadAll, nodeObjectsWriteAll, type ObjectBucketName } from "../core/subjects.ts";
import { type AssignmentView, createObjectAccess } from "./object_access.ts";
import { endRead, readHandler, type ReadSession } from "./object_reads.ts";
import { endWrite, writeHandler, type WriteSession } from "./object_writes.ts";

export type { AssignmentView, HeldTask } from "./object_access.ts";

/** What the object service needs. */
export interface ObjectServiceDeps {
  bus: Bus;
  log: Logger;
  /** The manager's buckets, by the short name nodes use. */
  buckets: Record<ObjectBucketName, () => Promise<Bucket>>;
  assignments: AssignmentView;
  /** Told of every refused call (the manager audits them). */
  onRefused?: (node: string, what: string) => void;
  /** Most bytes all reads together hold ahead of their nodes (64 MiB). */
  readBudgetBytes?: number;
}

/** The service of {@linkcode createObjectService}, as tests see it. */
export interface ObjectService {
  /** Reads in progress. */
  reads(): number;
  /** Writes in progress. */
  writes(): number;
  /** What reads hold ahead of their nodes. */
  readBudget: ByteBudget;
}

/** Bucket names, by the short name nodes use. */
export const OBJECT_BUCKETS: Record<ObjectBucketName, string> = {
  packages: PACKAGE_BUCKET,
  data: DATA_BUCKET,
  workspace: WORKSPACE_BUCKET,
};

/** A session without a request for this long is ended. */
const IDLE_MS = 60_000;

/** Serves nodes' object reads and writes until `signal` aborts. */
export function createObjectService(deps: ObjectServiceDeps, options: { signal: AbortSignal }): ObjectService {
  const { bus, log, assignments } = deps;
  const readBudget = createByteBudget(deps.readBudgetBytes ?? 64 * 2 ** 20);
  const reads = new Map<string, ReadSession>();
  const writes = new Map<string, WriteSession>();
  const access = createObjectAccess({ log, data: deps.buckets.data, assignments, onRefused: deps.onRefused });
  bus.serve(nodeObjectsReadAll, readHandler({ reads, readBudget, access, buckets: deps.buckets }), {
    signal: options.signal,
  });
  bus.serve(nodeObjectsWriteAll, writeHandler({ writes, access, buckets: deps.buckets }), { signal: options.signal });

  const sweep = setInterval(() => {
    const old = Date.now() - IDLE_MS;
    for (const [id, s] of reads) if (s.seenAt < old) endRead(reads, id, s);
    for (const [id, s] of writes) if (s.seenAt < old) endWrite(writes, id, s, "abandoned");
  }, IDLE_MS / 4);
  options.signal.addEventListener("abort", () => {
    clearInterval(sweep);
    for (const [id, s] of reads) endRead(reads, id, s);
    for (const [id, s] of writes) endWrite(writes, id, s, "stopping");
  }, { once: true });
  return { reads: () => reads.size, writes: () => writes.size, readBudget };
}
