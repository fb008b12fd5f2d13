/**
 * The rows of a task's `[task] inputs` file, for the API's instance views:
 * read from its package in the object store and parsed once per package
 * while it is being looked at (never stored per instance).
 *
 * @module
 */
import type { WorkspaceService } from "../services/workspace.ts";
import { NotFoundError } from "../core/errors.ts";
import type { InputRows } from "../core/inputs.ts";
import { type PackageLimits, readPackageInputs } from "../core/package.ts";
import type { TaskRecord } from "../core/schema.ts";

/** How many packages' rows are kept parsed. */
const KEPT = 4;

/** Returns a reader of tasks' input rows (null for a task without `[task] inputs`). */
export function createInputsReader(
  workspace: Pick<WorkspaceService, "getPackage">,
  limits: PackageLimits,
): (task: TaskRecord) => Promise<InputRows | null> {
  const kept = new Map<string, Promise<InputRows>>();
  return (task) => {
    const inputs = task.spec.inputs ?? null;
    if (!inputs) return Promise.resolve(null);
    let rows = kept.get(task.digest);
    if (rows) {
      // Most recently used last.
      kept.delete(task.digest);
      kept.set(task.digest, rows);
      return rows;
    }
    rows = workspace.getPackage(task.digest).then((bytes) => {
      if (!bytes) {
        throw new NotFoundError(`Cannot read the inputs of task '${task.id}' as its package is gone`, {
          code: "package_missing",
        });
      }
      return readPackageInputs(bytes, inputs, limits);
    });
    rows.catch(() => kept.delete(task.digest));
    if (kept.size >= KEPT) kept.delete(kept.keys().next().value!);
    kept.set(task.digest, rows);
    return rows;
  };
}
