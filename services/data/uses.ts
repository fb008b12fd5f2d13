/**
 * Which tasks use which versions: pinning the data sets a task names to
 * full versions at submit (only those shared with the submitter), and
 * finding the live tasks that use a version.
 *
 * @module
 */
import { ValidationError } from "../../core/errors.ts";
import { type DataUseRecord, FINAL_STATES, type TaskRecord, type TaskSpec } from "../../core/schema.ts";
import { lineOf } from "../../core/task_toml.ts";
import { dataUsesOf, taskKey } from "../../core/kv.ts";
import { type DataCaller, mayUse } from "./access.ts";
import { accessOf, match, versionsOf } from "./catalog.ts";
import { CATALOG, type DataState } from "./state.ts";

/** The queued or running tasks using `version`; forgets uses by tasks that ended or are gone. */
export async function liveUsers(s: DataState, version: string): Promise<TaskRecord[]> {
  const { kv } = s;
  const live: TaskRecord[] = [];
  for await (const e of kv.list<DataUseRecord>({ prefix: dataUsesOf(version) })) {
    const task = (await kv.get<TaskRecord>(taskKey(e.value.taskId))).value;
    if (task && !FINAL_STATES.has(task.state)) live.push(task);
    else await kv.delete(e.key);
  }
  return live;
}

/** Pins the data sets `spec` names, then runs `submit` under the catalog lock (see `DataService.submitWith`). */
export async function submitWith<T extends { id: string }>(
  s: DataState,
  spec: TaskSpec,
  taskToml: string,
  submit: (pinned: TaskSpec) => Promise<T>,
  by?: DataCaller,
): Promise<T> {
  const entries = Object.entries(spec.data ?? {});
  if (entries.length === 0) return await submit(spec);
  return await s.locks.run(CATALOG, async () => {
    const pinned: TaskSpec["data"] = {};
    for (const [key, { name, version }] of entries) {
      const at = lineOf(taskToml, ["data", key]);
      const fail = (why: string, code: string): never => {
        throw new ValidationError(
          `task.toml${at ? ` line ${at}` : ""}: key 'data.${key}' = "${name}${version ? `@${version}` : ""}": ${why}`,
          { code },
        );
      };
      const versions = await versionsOf(s, name);
      const access = await accessOf(s, name, versions);
      // One answer for both: a data set not shared with the caller is not shown to exist.
      if (versions.length === 0 || !access || !mayUse(access, by)) {
        fail(`data set '${name}' does not exist or is not shared with you`, "unknown_data_set");
      }
      const found = version === null ? versions[0] : match(name, versions, version);
      if (!found) fail(`data set '${name}' has no version ${version}`, "unknown_data_version");
      pinned[key] = { name, version: found!.version };
    }
    // The task actor stores the uses of the pinned versions in the same atomic as the task (the catalog lock,
    // held until it answers, keeps the versions from going away meanwhile).
    return await submit({ ...spec, data: pinned });
  });
}
