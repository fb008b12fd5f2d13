/**
 * The user-facing commands: submit, status, logs, cancel, nodes, login.
 *
 * @module
 */
import { notifyLine } from "../core/notify_line.ts";
import { AVOID_AFTER_FAILURES, howItEnded } from "../core/outcome.ts";
import { resolve } from "../core/posix_path.ts";
import type { InstanceView, NodeRecord, SubmitView, TaskView } from "../core/schema.ts";
import { UnavailableError } from "../core/errors.ts";
import { type Client, limits, saveSettings, usage } from "./client.ts";
import { followTask } from "./follow.ts";
import { formatBytes, loadPackage, type PackageBody } from "./package_file.ts";

export { formatBytes };

const encoder = new TextEncoder();
const isTty = () => Deno.stderr.isTerminal();

/** Draws a progress bar of `width` characters. */
export function bar(done: number, total: number, width = 30): string {
  const filled = total > 0 ? Math.round((done / total) * width) : width;
  return `[${"#".repeat(filled)}${".".repeat(width - filled)}]`;
}

/** Redraws the progress line on stderr (only in a terminal). */
export function status(line: string) {
  if (isTty()) Deno.stderr.writeSync(encoder.encode(`\r\x1b[2K${line}`));
}

/** Uploads a package with a progress bar; returns the response. */
async function upload(
  client: Client,
  path: string,
  pkg: PackageBody,
  headers: Record<string, string> = {},
): Promise<Response> {
  let sent = 0;
  const total = pkg.size;
  const body = (await pkg.open()).pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, controller) {
        sent += chunk.byteLength;
        controller.enqueue(chunk);
        status(`Uploading ${bar(sent, total)} ${formatBytes(sent)} / ${formatBytes(total)}`);
      },
      flush: () => status(`Uploading ${bar(1, 1)} ${formatBytes(total)}\n`),
    }),
  );
  return await client.upload(path, {
    method: "POST",
    headers: { "content-type": "application/zip", ...headers },
    body,
    sizeBytes: total,
  });
}

/** A multipart body of fields `overrides` and `package`, streamed like the package alone (with progress). */
function multipart(name: string, pkg: PackageBody, overrides: string): { body: PackageBody; type: string } {
  const boundary = `parallelic-${crypto.randomUUID()}`;
  const head = encoder.encode(
    `--${boundary}\r\ncontent-disposition: form-data; name="overrides"\r\n\r\n${overrides}\r\n` +
      `--${boundary}\r\ncontent-disposition: form-data; name="package"; filename="${name.replace(/"/g, "")}.zip"` +
      `\r\ncontent-type: application/zip\r\n\r\n`,
  );
  const tail = encoder.encode(`\r\n--${boundary}--\r\n`);
  const body: PackageBody = {
    size: head.byteLength + pkg.size + tail.byteLength,
    open: async () => {
      const inner = await pkg.open();
      return new ReadableStream<Uint8Array>({
        async start(controller) {
          controller.enqueue(head);
          for await (const chunk of inner) controller.enqueue(chunk);
          controller.enqueue(tail);
          controller.close();
        },
      });
    },
  };
  return { body, type: `multipart/form-data; boundary=${boundary}` };
}

/**
 * Submits a package under a new Idempotency-Key, sending it again (same
 * key) while the manager cannot be reached or cannot reach NATS, for up to
 * the client's `retryMs`: a repeat answers the task the first one made, so
 * a submit whose answer was lost never makes two tasks.
 */
export async function submitPackage(
  client: Client,
  name: string,
  pkg: PackageBody | Uint8Array,
  overrides?: string,
  strict = false,
  after?: string,
): Promise<SubmitView> {
  const zipped: PackageBody = pkg instanceof Uint8Array
    ? { size: pkg.byteLength, open: () => Promise.resolve(new Blob([pkg as Uint8Array<ArrayBuffer>]).stream()) }
    : pkg;
  const key = crypto.randomUUID();
  const { body, type } = overrides === undefined
    ? { body: zipped, type: "application/zip" }
    : multipart(name, zipped, overrides);
  // Counted from the first failure: a long upload does not use the time up.
  let until: number | undefined;
  for (let waitMs = 250;; waitMs = Math.min(2000, waitMs * 2)) {
    try {
      const query = `name=${encodeURIComponent(name)}${strict ? "&strict=1" : ""}` +
        (after ? `&after=${encodeURIComponent(after)}` : "");
      const res = await upload(client, `/api/v1/tasks?${query}`, body, {
        "idempotency-key": key,
        "content-type": type,
      });
      return await res.json() as SubmitView;
    } catch (e) {
      until ??= Date.now() + (client.settings.retryMs ?? 15_000);
      if (!(e instanceof UnavailableError) || e.code === "internal" || Date.now() + waitMs > until) throw e;
      console.error(`${e.message}; sending it again in ${waitMs} ms (with the same key: it cannot make two tasks)`);
      await new Promise((r) => setTimeout(r, waitMs));
    }
  }
}

/** Prints a one-line summary of counts. */
export function countsLine(t: Pick<TaskView, "counts">): string {
  const c = t.counts;
  return `${c.succeeded} succeeded, ${c.failed} failed, ${c.running} running, ${c.queued} queued` +
    (c.cancelled ? `, ${c.cancelled} cancelled` : "");
}

/** `Task ID succeeded: 4 succeeded, 0 failed, …` */
export const summaryLine = (t: TaskView) => `Task ${t.id} ${t.state}: ${countsLine(t)}`;

/** Follows a task until it ends (or the clock passes `untilMs`: then it may still run); returns it. */
export async function waitFor(client: Client, id: string, show = true, untilMs = Infinity): Promise<TaskView> {
  const task = await followTask(client, id, (t) => {
    const done = t.counts.succeeded + t.counts.failed + t.counts.cancelled;
    if (show) status(`${t.state.padEnd(9)} ${bar(done, t.instances)} ${countsLine(t)}`);
  }, untilMs);
  if (show && isTty()) Deno.stderr.writeSync(encoder.encode("\n"));
  return task;
}

/** `parallelic submit PATH [--after ID[,ID]]`: returns the exit code. With `json`, stdout gets the answer (or, waiting, the task). */
export async function submit(
  client: Client,
  path: string,
  wait: boolean,
  json = false,
  sets: readonly string[] = [],
  strict = false,
  after?: string,
): Promise<number> {
  // Asked first, and listened for once the folder is listed.
  const asked = limits(client);
  // Read before the package is zipped: a wrong --set costs nothing. Its TOML parser is loaded only then.
  const overrides = sets.length > 0 ? (await import("../core/overrides.ts")).overridesFromPairs(sets) : undefined;
  await using pkg = await loadPackage(
    path,
    asked,
    (zipped, files) => status(`Zipping ${formatBytes(zipped)} (of ${formatBytes(files)} of files)`),
  );
  const known = await asked;
  status("");
  console.error(`Package ${pkg.name}: ${formatBytes(pkg.size)}`);
  const limit = known?.maxPackageBytes;
  if (limit !== undefined && pkg.size > limit) {
    usage(`Cannot accept package as its size ${pkg.size} bytes exceeds the limit of ${limit} bytes`);
  }
  client.step("cli.submit");
  const created = await submitPackage(client, pkg.name, pkg, overrides, strict, after);
  client.step("cli.answered");
  for (const w of created.warnings ?? []) console.error(`Warning: ${w} (it waits; --strict refuses such a submit)`);
  if (json && !wait) console.log(JSON.stringify(created, null, 2));
  else if (!json) console.log(created.id);
  console.error(`Submitted task ${created.id} (${created.instances} instances)`);
  if (!wait) return 0;
  const task = await waitFor(client, created.id);
  client.step("cli.done");
  if (json) console.log(JSON.stringify(task, null, 2));
  console.error(summaryLine(task));
  printHint(task);
  if (task.state !== "succeeded") await printFailures(client, task);
  return task.state === "succeeded" ? 0 : 1;
}

/** Says what a task's instances likely got wrong (see `TaskRecord.hint`), on stderr. */
export const printHint = (task: TaskView): void => {
  if (task.hint) console.error(`Hint: ${task.hint}`);
};

async function printFailures(client: Client, task: TaskView): Promise<void> {
  if (task.finalize === "failed") {
    const fin = await client.json<InstanceView>(`/api/v1/tasks/${task.id}/instances/finalize`);
    console.error(`Finalize failed: ${howItEnded(fin.history.at(-1))} on ${fin.node ?? "?"}`);
    console.error(`Its log: parallelic logs ${task.id} --finalize; once fixed: parallelic rerun ${task.id} --finalize`);
  }
  if (task.counts.failed === 0) return;
  const shown: string[] = [];
  for (let from = 0; from < task.instances && shown.length < 10; from += 10_000) {
    const page = await client.json<{ instances: InstanceView[] }>(
      `/api/v1/tasks/${task.id}/instances?from=${from}&limit=10000`,
    );
    for (const i of page.instances) {
      if (i.state === "failed" && shown.length < 10) {
        const last = i.history[i.history.length - 1];
        shown.push(`  instance ${i.index}: ${howItEnded(last)} on ${i.node ?? "?"}`);
      }
    }
  }
  console.error(`Failed instances (first ${shown.length}):\n${shown.join("\n")}`);
  console.error(`Logs: parallelic logs ${task.id} --instance N; once fixed: parallelic rerun ${task.id}`);
}

const age = (ms: number | null) => {
  if (ms === null) return "-";
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 90 ? `${s}s` : s < 5400 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
};

/** Prints rows as aligned columns. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length)));
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i])).join("  ")).join("\n");
}

/**
 * CPU time used against CPU time asked for (`cpus` × the wall time of every
 * attempt), as `seff` reports efficiency, and the largest peak memory.
 */
export function usageLine(t: TaskView): string {
  const asked = (t.wallMs ?? 0) * t.spec.cpus;
  if (asked === 0) return "-";
  const efficiency = (t.cpuMs ?? 0) / asked;
  const memory = t.spec.memoryBytes > 0 ? ` of ${formatBytes(t.spec.memoryBytes)}` : "";
  return `CPU ${((t.cpuMs ?? 0) / 1000).toFixed(1)}s of ${(asked / 1000).toFixed(1)}s asked ` +
    `(${t.spec.cpus} cpus × wall), efficiency ${(efficiency * 100).toFixed(1)}%; ` +
    `peak memory ${formatBytes(t.maxRssBytes ?? 0)}${memory}`;
}

/** `parallelic status [ID] [--limit N]` */
export async function showStatus(
  client: Client,
  id: string | undefined,
  json: boolean,
  limit?: number,
): Promise<number> {
  if (id && limit !== undefined) usage("'parallelic status ID' shows one task: --limit is for the list");
  if (!id) {
    if (limit !== undefined && (limit < 1 || limit > 1000)) usage(`--limit must be 1 to 1000: got ${limit}`);
    const { tasks } = await client.json<{ tasks: TaskView[] }>(`/api/v1/tasks${limit ? `?limit=${limit}` : ""}`);
    if (json) return console.log(JSON.stringify(tasks, null, 2)), 0;
    if (tasks.length === 0) return console.log("No tasks yet. Submit one: parallelic submit examples/hello"), 0;
    console.log(table([
      ["ID", "NAME", "STATE", "OWNER", "AGE", "PROGRESS"],
      ...tasks.map((t) => [t.id, t.name, t.state, t.owner, age(t.createdAt), countsLine(t)]),
    ]));
    return 0;
  }
  const t = await client.json<TaskView>(`/api/v1/tasks/${id}`);
  if (json) return console.log(JSON.stringify(t, null, 2)), 0;
  // Queued instances of a task that avoids nodes may have nowhere to go: say why they wait.
  const why = t.counts.queued > 0 && avoidedOf(t).length > 0
    ? (await client.json<{ explanation: string }>(`/api/v1/tasks/${t.id}/explain`)).explanation
    : null;
  const dur = t.startedAt ? `${(((t.endedAt ?? Date.now()) - t.startedAt) / 1000).toFixed(1)}s` : "-";
  console.log(table([
    ["Task", t.id],
    ["Name", t.name],
    [
      "State",
      t.state + (t.reason ? ` (${t.reason})` : "") +
      (t.waitingOn?.length ? ` (waits for ${t.waitingOn.join(", ")})` : ""),
    ],
    ["Owner", t.owner],
    ["Instances", `${t.instances}  ${bar(t.counts.succeeded + t.counts.failed + t.counts.cancelled, t.instances, 20)}`],
    ["Counts", countsLine(t)],
    t.spec.command
      ? ["Command", t.spec.command]
      : ["Entrypoint", `${t.spec.entrypoint} ${t.spec.args.join(" ")}`.trim()],
    ["Submitted", `${age(t.createdAt)} ago`],
    ["Duration", dur],
    ["Package", `${t.digest.slice(0, 19)}… (${formatBytes(t.packageBytes)})`],
    ...(t.overrides ? [["Overrides", t.overrides.trim().split("\n").join("; ")]] : []),
    ...(t.hint ? [["Hint", t.hint]] : []),
    ...(Object.keys(t.nodeFailures ?? {}).length
      ? [["Node failures", Object.entries(t.nodeFailures).map(([n, k]) => `${n}: ${k}`).join(", ") + avoidNote(t)]]
      : []),
    ...(why ? [["Queued", why]] : []),
    ...(t.spec.finalize
      ? [[
        "Finalize",
        `${t.spec.finalize.entrypoint ?? t.spec.finalize.command}: ${t.finalize ?? "waits for every instance"}`,
      ]]
      : []),
    ...Object.entries(t.spec.data ?? {}).map(([k, d]) => [`Data ${k}`, `${d.name}@${d.version}`]),
    ...(t.notify ? [["Notify", `${t.notify.url}: ${notifyLine(t.notify, Date.now())}`]] : []),
    ["Space", `outputs ${formatBytes(t.outputBytes ?? 0)}, logs ${formatBytes(t.logBytes ?? 0)}`],
    ["Usage", usageLine(t)],
  ]));
  return 0;
}

/** The nodes a task avoids (see `actors/task/placement.ts`). */
const avoidedOf = (t: TaskView) =>
  Object.entries(t.nodeFailures ?? {}).filter(([n, k]) => k >= AVOID_AFTER_FAILURES && !t.nodeSuccesses?.[n])
    .map(([n]) => n);

/** Which nodes a task avoids, in words. */
const avoidNote = (t: TaskView) => {
  const avoided = avoidedOf(t);
  return avoided.length ? ` (${avoided.join(", ")} take no more of it; a rerun clears this)` : "";
};

/** `parallelic logs ID [--instance N] [--follow]` */
export async function showLogs(
  client: Client,
  id: string,
  instance: number | "finalize",
  follow: boolean,
): Promise<number> {
  const res = await client.fetch(`/api/v1/tasks/${id}/instances/${instance}/logs${follow ? "?follow=1" : ""}`);
  await res.body?.pipeTo(Deno.stdout.writable, { preventClose: true });
  return 0;
}

/** `parallelic cancel ID` */
export async function cancel(client: Client, id: string): Promise<number> {
  const res = await client.json<{ id: string; state: string }>(`/api/v1/tasks/${id}/cancel`, { method: "POST" });
  console.log(`Task ${res.id} ${res.state}`);
  return 0;
}

/** `parallelic nodes [ls | drain NAME | resume NAME]` */
export async function nodes(client: Client, args: string[], json: boolean): Promise<number> {
  const [verb = "ls", name] = args;
  if (verb === "drain" || verb === "resume") {
    if (!name) usage(`Usage: parallelic nodes ${verb} NAME`);
    const res = await client.json<{ node: NodeRecord }>(`/api/v1/nodes/${encodeURIComponent(name)}/${verb}`, {
      method: "POST",
    });
    console.log(`Node ${res.node.name} ${res.node.state}`);
    return 0;
  }
  if (verb !== "ls") usage(`Unknown 'nodes' command '${verb}': use ls, drain NAME or resume NAME`);
  const { nodes } = await client.json<{ nodes: NodeRecord[] }>("/api/v1/nodes");
  if (json) return console.log(JSON.stringify(nodes, null, 2)), 0;
  if (nodes.length === 0) {
    return console.log("No nodes joined yet. Start one: deno task node --nats=nats://HOST:4222"), 0;
  }
  console.log(table([
    ["NAME", "STATE", "SLOTS", "CPUS", "MEMORY", "GPUS", "LABELS", "LAST SEEN"],
    ...nodes.map((n) => [
      n.name,
      n.state,
      `${n.usedSlots}/${n.slots}`,
      String(n.cpus),
      formatBytes(n.memoryBytes),
      String(n.gpus),
      Object.entries(n.labels).map(([k, v]) => `${k}=${v}`).join(",") || "-",
      `${age(n.lastSeenAt)} ago`,
    ]),
  ]));
  return 0;
}

/** `parallelic login --manager URL [--token T]`: checks and saves the settings. */
export async function login(client: Client): Promise<number> {
  const who = await client.json<{ user: string; role: string }>("/api/v1/whoami");
  const file = await saveSettings({
    manager: client.settings.manager,
    token: client.settings.token ?? undefined,
    // Saved as an absolute path: later commands may run from another folder.
    caFile: client.settings.caFile ? resolve(client.settings.caFile) : undefined,
  });
  console.log(`Signed in to ${client.settings.manager} as ${who.user} (${who.role}); saved to ${file}`);
  return 0;
}

/** `parallelic explain ID [--instance N]` */
export async function explain(client: Client, id: string, instance: number | undefined): Promise<number> {
  const q = instance === undefined ? "" : `?instance=${instance}`;
  const res = await client.json<{ state: string; explanation: string }>(`/api/v1/tasks/${id}/explain${q}`);
  console.log(`${res.state}: ${res.explanation}`);
  return 0;
}
