/**
 * Task: counts, timing, specification, finalize as its own step, what the
 * task is tied to (data set versions, tasks before and after it), a contact
 * sheet of the latest frames, the instance grid, and one instance's (or
 * finalize's) details, outputs and live log. Kept live by the task's event
 * stream. Asks the
 * scheduler why it waits, downloads its outputs, cancels and deletes it;
 * reruns what failed, the instance shown or finalize once it ended; changes
 * its priority, holds and releases it while it runs.
 */
import {
  api,
  apiJson,
  badge,
  deleteTask,
  download,
  everySecond,
  fillFacts,
  FINAL,
  formatBytes,
  formatCount,
  formatDuration,
  formatTime,
  h,
  liveEvents,
  may,
  mayDelete,
  progressBar,
  reportError,
  runTime,
  specFacts,
  startPage,
  STATES,
} from "./common.js";
import { createFailureList, howItEnded, timedOut } from "./failures.js";
import { createFinalizeCard } from "./finalize.js";
import { createGrid, STATE_NAMES } from "./grid.js";
import { createLogView } from "./logview.js";
import { createNotify } from "./notify.js";
import { createOutputs, instancePath } from "./outputs.js";
import { createContactSheet, showPreview } from "./preview.js";
import { showRelated } from "./related.js";

const who = await startPage();
const taskId = document.querySelector("[data-task-id]").dataset.taskId;
const $ = (id) => document.getElementById(id);
const STATES_PAGE = 100_000;
/** Frames on the contact sheet, and the least time between its updates while the task runs. */
const SHEET_FRAMES = 24;
const SHEET_GAP_MS = 5000;
const SUCCEEDED = STATE_NAMES.indexOf("succeeded");

let task = null;
let grid = null;
let shownIndex = null;
/** State of the instance shown, once read. */
let shownState = null;
let statesLoading = null;
const logView = createLogView(taskId);
const failures = createFailureList($("failures"), taskId, { onOpen: (i) => void openInstance(i) });
const notify = createNotify($("notify"), taskId);
const outputs = createOutputs($("instance-outputs"), taskId, { label: "Outputs of the instance shown" });
const finalizeCard = createFinalizeCard($("finalize"), taskId, {
  onOpen: () => void openInstance(task.instances),
  onRerun: () => $("rerun-finalize").click(),
});
const sheet = createContactSheet($("frames"), taskId, { onOpen: (i) => void openInstance(i) });
/** The path segment of instance `i` in API paths (finalize's is `finalize`). */
const segmentOf = (i) => instancePath(i, task.instances);

function renderTask() {
  document.title = `${task.name} · Parallelic`;
  $("task-name").textContent = task.name;
  $("task-state").className = `badge s-${task.state}`;
  $("task-state").textContent = task.state;
  $("task-bar").replaceWith(Object.assign(progressBar(task.counts, task.instances, true), { id: "task-bar" }));
  $("counts").replaceChildren(
    ...STATES.map((s) => h("li", { class: `k-${s}` }, `${formatCount(task.counts[s])} ${s}`)),
  );
  $("reason").hidden = !task.reason;
  $("reason").textContent = task.reason ?? "";
  $("cancel").hidden = FINAL.has(task.state) || !may(who, "submitter");
  renderChanges();
  finalizeCard.render(task, !$("rerun-finalize").hidden);
  $("delete").hidden = !mayDelete(who, task);
  $("download").hidden = !FINAL.has(task.state);
  renderExplain();
  renderTiming();
}

/** The rerun, priority, hold and release buttons: whoever may cancel a task may use them. */
function renderChanges() {
  const may_ = may(who, "submitter");
  const ended = FINAL.has(task.state);
  const c = task.counts;
  const finalizeFailed = task.finalize === "failed" || task.finalize === "cancelled";
  $("rerun-failed").hidden = !may_ || !ended || (c.failed + c.cancelled === 0 && !finalizeFailed);
  $("rerun-instance").hidden = !may_ || !ended || shownIndex === null || shownIndex >= task.instances;
  $("rerun-instance").textContent = `Rerun instance ${shownIndex ?? ""}`.trim();
  $("rerun-finalize").hidden = !may_ || !ended || !task.spec.finalize || c.succeeded < task.instances;
  $("priority").hidden = !may_ || ended;
  $("hold").hidden = !may_ || ended || task.held;
  $("release").hidden = !may_ || ended || !task.held;
}

/** What "Why is this queued?" asks about: the instance shown while it is queued, else the task. */
const explainTarget = () => shownIndex !== null && shownState === "queued" ? shownIndex : null;

/**
 * The nodes the task avoids: AVOID_AFTER_FAILURES (3) of its attempts failed on each and none succeeded there (see
 * actors/task/placement.ts).
 */
const avoidedNodes = () =>
  Object.entries(task.nodeFailures ?? {}).filter(([n, k]) => k >= 3 && !task.nodeSuccesses?.[n]).map(([n]) => n);

/** Which nodes the task avoids, in words. */
function avoidNote() {
  const avoided = avoidedNodes();
  return avoided.length ? ` (${avoided.join(", ")} take no more of it; a rerun clears this)` : "";
}

function renderExplain() {
  // A task that avoids nodes may have nowhere to put its queued instances: explain says so.
  const queued = task.state === "queued" || explainTarget() !== null ||
    (task.counts.queued > 0 && avoidedNodes().length > 0);
  $("explain").hidden = !queued;
  if (!queued) $("explain-text").textContent = "";
}

function renderTiming() {
  fillFacts($("timing"), [
    ["Submitted", formatTime(task.createdAt)],
    ["Started", formatTime(task.startedAt)],
    ["Ended", formatTime(task.endedAt)],
    ["Duration", runTime(task.startedAt, task.endedAt)],
    ["Owner", task.owner],
    ["Priority", `${task.spec.priority}${task.held ? " (held: nothing new starts)" : ""}`],
    ...(task.reruns ? [["Reruns", String(task.reruns)]] : []),
    ...(task.overrides ? [["Overrides", h("code", {}, task.overrides.trim())]] : []),
    ...(task.hint ? [["Hint", task.hint]] : []),
    ...(Object.keys(task.nodeFailures ?? {}).length
      ? [["Node failures", Object.entries(task.nodeFailures).map(([n, k]) => `${n}: ${k}`).join(", ") + avoidNote()]]
      : []),
    ...(task.wallMs ? [["CPU used", cpuUsed(task)], ["Peak memory", formatBytes(task.maxRssBytes ?? 0)]] : []),
  ]);
}

/** CPU time used, and its efficiency: used over asked for (cpus × wall time of every attempt), as seff says it. */
function cpuUsed(t) {
  const asked = t.wallMs * t.spec.cpus;
  return `${formatDuration(t.cpuMs ?? 0)} of ${formatDuration(asked)} asked (${
    (100 * (t.cpuMs ?? 0) / asked).toFixed(1)
  }% efficiency)`;
}

function renderSpec(spec, packageBytes) {
  fillFacts($("spec"), [...specFacts(spec), ["Package", formatBytes(packageBytes)]]);
}

async function loadStates() {
  // Coalesce: one load at a time; a request during one runs once it ends.
  if (statesLoading) return statesLoading.then(loadStates);
  statesLoading = (async () => {
    for (let from = 0; from < task.instances; from += STATES_PAGE) {
      const page = await apiJson(`/api/v1/tasks/${taskId}/states?from=${from}&limit=${STATES_PAGE}`);
      grid.load(page.from, page.states);
    }
  })();
  try {
    await statesLoading;
  } finally {
    statesLoading = null;
  }
}

let loaded = false;
let fetching = 0;
let pending = [];

function applyPending() {
  if (!loaded || fetching > 0 || !task) return;
  const events = pending;
  pending = [];
  for (const e of events) applyProgress(e);
}

async function load() {
  // Events that arrive while the view is fetched are newer than it may be: hold them and lay them over it after.
  fetching++;
  try {
    task = await apiJson(`/api/v1/tasks/${taskId}`);
  } catch (e) {
    $("load-error").textContent = e.message;
    return;
  } finally {
    fetching--;
  }
  $("load-error").textContent = "";
  renderTask();
  notify.show(task);
  applyPending();
  renderSpec(task.spec, task.packageBytes);
  grid ??= createGrid($("grid"), task.instances, {
    onOpen: (i) => openInstance(i),
    onHover: (i) => {
      $("grid-hover").textContent = i === null ? "\u00a0" : `Instance ${i}: ${STATE_NAMES[grid.state(i)]}`;
    },
  });
  labelGrid();
  $("instance-number").max = String(task.instances - 1);
  const related = showRelated($("related"), taskId).catch(reportError);
  await Promise.all([loadStates(), task.counts.failed > 0 ? failures.reload() : null, related]);
  updateSheet();
  const fromHash = /^#i=(\d+|finalize)$/.exec(location.hash);
  const hashIndex = fromHash?.[1] === "finalize" ? task.instances : Number(fromHash?.[1]);
  if (fromHash && shownIndex === null) await openInstance(hashIndex);
  else if (shownIndex !== null) await refreshInstance();
}

let sheetTimer = null;
let sheetAt = 0;

/** Shows the newest succeeded instances on the contact sheet: at once, then at most every few seconds. */
function updateSheet() {
  if (sheetTimer !== null) return;
  sheetTimer = setTimeout(() => {
    sheetTimer = null;
    sheetAt = Date.now();
    const latest = [];
    for (let i = task.instances - 1; i >= 0 && latest.length < SHEET_FRAMES; i--) {
      if (grid.state(i) === SUCCEEDED) latest.push(i);
    }
    void sheet.update(latest, task.instances);
  }, Math.max(0, sheetAt + SHEET_GAP_MS - Date.now()));
}

const describeCounts = (c) => STATES.filter((s) => c[s]).map((s) => `${formatCount(c[s])} ${s}`).join(", ");

function labelGrid() {
  const what = `Grid of ${formatCount(task.instances)} instances: ${describeCounts(task.counts)}`;
  $("grid").setAttribute("aria-label", `${what}. Failed cells carry a cross.`);
}

function applyProgress(event) {
  const old = task;
  task = { ...task, ...event };
  renderTask();
  notify.progress(old, task);
  labelGrid();
  if (event.counts && event.counts.failed !== failures.count) void failures.reload().catch(reportError);
  if (event.changed) grid.change(event.changed);
  else void loadStates().catch(reportError);
  if (event.counts && event.counts.succeeded !== old.counts.succeeded) updateSheet();
  if (event.state === "cancelled") grid.cancelQueued();
  const mine = shownIndex !== null &&
    (event.changed?.some(([i]) => i === shownIndex) || (FINAL.has(event.state) && !FINAL.has(old.state)));
  if (mine) void refreshInstance();
}

// ---------------------------------------------------------------------------
// One instance

/** Opens instance `index` in the details panel; the number of instances opens finalize there. */
async function openInstance(index) {
  const finalize = task?.spec.finalize && index === task.instances;
  if (!task || !Number.isInteger(index) || index < 0 || (index >= task.instances && !finalize)) {
    $("instance").hidden = false;
    $("instance-error").textContent = task ? `Instances are numbered 0 to ${task.instances - 1}.` : "";
    return;
  }
  shownIndex = index;
  shownState = null;
  renderChanges();
  $("explain-text").textContent = "";
  history.replaceState(null, "", `#i=${segmentOf(index)}`);
  if (!finalize) {
    grid.select(index);
    failures.setCurrent(index);
    $("instance-number").value = String(index);
  }
  $("instance").hidden = false;
  $("instance-title").textContent = finalize ? "Finalize" : `Instance ${index}`;
  await refreshInstance();
}

async function refreshInstance() {
  const index = shownIndex;
  $("instance-error").textContent = "";
  let inst;
  try {
    inst = await apiJson(`/api/v1/tasks/${taskId}/instances/${segmentOf(index)}`);
  } catch (e) {
    $("instance-error").textContent = e.message;
    return;
  }
  if (index !== shownIndex) return;
  shownState = inst.state;
  renderExplain();
  const last = inst.history.at(-1);
  const params = Object.entries(inst.params);
  fillFacts($("instance-facts"), [
    ["State", badge(inst.state)],
    ["Exit code", exitFact(inst)],
    // The node's reason (a timeout, a memory limit) says more than the signal it stopped the process with.
    ...(inst.signal ? [last?.error ? ["Ended", `${last.error} (${inst.signal})`] : ["Signal", inst.signal]] : []),
    ["Node", inst.node ?? "–"],
    ["Attempt", `${inst.attempt + 1} of at most ${task.spec.retries + 1}`],
    // A node reports when an attempt started with its result; until then, show when it was assigned.
    inst.startedAt || !last ? ["Started", formatTime(inst.startedAt)] : ["Assigned", formatTime(last.assignedAt)],
    ["Ran for", runTime(inst.startedAt ?? last?.assignedAt, inst.endedAt)],
    ...(last?.cpuMs !== undefined
      ? [["Used", `CPU ${formatDuration(last.cpuMs)}, peak memory ${formatBytes(last.maxRssBytes ?? 0)}`]]
      : []),
    ...params.map(([k, v]) => [`Param ${k}`, h("code", {}, String(v))]),
    ...(last?.error && !inst.signal ? [["Note", last.error]] : []),
    ...(last?.lastStderr ? [["Last stderr line", h("code", {}, last.lastStderr)]] : []),
    ...(last?.hint ? [["Hint", last.hint]] : []),
    ...chunkFacts(inst),
  ]);
  $("attempts").querySelector("tbody").replaceChildren(
    ...(inst.history.length
      ? inst.history.map((a) =>
        h(
          "tr",
          {},
          h("td", {}, String(a.attempt)),
          h("td", {}, a.node),
          h("td", {}, formatTime(a.startedAt ?? a.assignedAt)),
          h("td", {}, runTime(a.startedAt, a.endedAt)),
          h("td", {}, a.cpuMs === undefined ? "–" : formatDuration(a.cpuMs)),
          h("td", {}, a.maxRssBytes === undefined ? "–" : formatBytes(a.maxRssBytes)),
          h("td", {}, a.exitCode === null ? (a.signal ?? "–") : String(a.exitCode)),
          h("td", {}, a.error ?? ""),
        )
      )
      : [h("tr", {}, h("td", { colspan: "8", class: "muted" }, "Not started yet."))]),
  );
  const live = !FINAL.has(inst.state) && !FINAL.has(task.state);
  logView.show(segmentOf(index), inst.history, inst.attempt, live);
  await showOutputs(index, inst);
}

/** The outputs of the instance shown once it ended, with a preview of its first image. */
async function showOutputs(index, inst) {
  const ended = inst.state === "succeeded" || inst.state === "failed";
  const view = await outputs.show(ended ? segmentOf(index) : null, `${inst.attempt}/${inst.endedAt}`);
  if (index !== shownIndex) return;
  if (!ended) $("instance-preview").hidden = true;
  if (!view) return;
  const image = view.files.find((f) => f.image);
  $("instance-preview").hidden = !image;
  if (image) {
    const alt = `Preview of ${image.path}, the first image output of ${$("instance-title").textContent.toLowerCase()}`;
    await showPreview($("instance-preview"), taskId, segmentOf(index), { max: 256, alt });
  }
}

/** Which chunk's process ran the instance's last attempt ([task] chunk): the chunk's log is its first instance's. */
function chunkFacts(inst) {
  const chunk = inst.history.at(-1)?.chunk;
  if (!chunk) return [];
  const range = `${chunk.first}–${chunk.last}`;
  if (chunk.first === inst.index) return [["Chunk", `ran instances ${range} in one process: this log is theirs`]];
  const open = h(
    "button",
    { type: "button", class: "link", onclick: () => openInstance(chunk.first) },
    "instance " +
      chunk.first,
  );
  return [["Chunk", h("span", {}, `ran in the chunk of instances ${range} (one process): its log is under `, open)]];
}

/** The exit code, and whether it timed out (the code is then the killed process's). */
function exitFact(inst) {
  if (inst.exitCode === null) return inst.state === "failed" ? howItEnded(inst) : "–";
  return timedOut(inst) ? `${inst.exitCode} (timed out)` : String(inst.exitCode);
}

// ---------------------------------------------------------------------------

$("open-instance").addEventListener("submit", (e) => {
  e.preventDefault();
  void openInstance(Number($("instance-number").value));
});

/** Runs a button's action, with the button disabled meanwhile and any error shown beside it. */
function onAction(id, action) {
  const button = $(id);
  button.addEventListener("click", async () => {
    button.disabled = true;
    $("action-error").textContent = "";
    try {
      await action();
    } catch (e) {
      $("action-error").textContent = e.message;
    } finally {
      button.disabled = false;
    }
  });
}

onAction("cancel", async () => {
  if (!confirm(`Cancel task ${task.name} (${task.id})? Its running instances are stopped.`)) return;
  await api(`/api/v1/tasks/${taskId}/cancel`, { method: "POST" });
});

/** Sends a change, then reads the task again (progress events carry neither priority nor held). */
async function change(path, method, body) {
  await api(`/api/v1/tasks/${taskId}${path}`, {
    method,
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  await load();
}

onAction("rerun-failed", async () => {
  const what = `every instance of ${task.name} that did not succeed`;
  if (!confirm(`Rerun ${what}? They get new attempts in this task; finalize then runs again.`)) return;
  await change("/rerun", "POST", { instances: "failed" });
});

onAction("rerun-instance", async () => {
  const index = shownIndex;
  if (!confirm(`Rerun instance ${index} of ${task.name}? Its new outputs replace the ones it stored.`)) return;
  await change("/rerun", "POST", { instances: [index] });
});

onAction("rerun-finalize", async () => {
  if (!confirm(`Run the finalize of ${task.name} again?`)) return;
  await change("/rerun", "POST", { finalize: true });
});

onAction("priority", async () => {
  const answer = prompt(`Priority of ${task.name} (0-100, higher first):`, String(task.spec.priority));
  if (answer === null) return;
  const priority = Number(answer);
  if (!Number.isInteger(priority) || priority < 0 || priority > 100) throw new Error("A priority is 0 to 100.");
  await change("", "PATCH", { priority });
});

onAction("hold", async () => {
  if (!confirm(`Hold ${task.name}? Nothing new of it is started; what runs goes on.`)) return;
  await change("", "PATCH", { held: true });
});

onAction("release", async () => {
  if (!confirm(`Release ${task.name}? Its queued instances start again.`)) return;
  await change("", "PATCH", { held: false });
});

onAction("explain", async () => {
  const index = explainTarget();
  const query = index === null ? "" : `?instance=${segmentOf(index)}`;
  const reply = await apiJson(`/api/v1/tasks/${taskId}/explain${query}`);
  const what = reply.index === null ? "Task" : reply.index === task.instances ? "Finalize" : `Instance ${reply.index}`;
  $("explain-text").textContent = `${what} (${reply.state}): ${reply.explanation}`;
});

onAction("download", async () => {
  $("download-status").textContent = "downloading…";
  try {
    const bytes = await download(`/api/v1/tasks/${taskId}/workspace.zip`, `${taskId}.zip`);
    $("download-status").textContent = `downloaded ${formatBytes(bytes)}`;
  } catch (e) {
    $("download-status").textContent = "";
    throw e;
  }
});

onAction("delete", async () => {
  if (await deleteTask(task)) location.assign("/tasks");
});

liveEvents({ topics: "tasks", task: taskId }, {
  async onReady() {
    loaded = false;
    await load();
    loaded = true;
    applyPending();
  },
  onEvent(kind, data) {
    if (kind === "notify") return notify.update(data);
    if (kind !== "task" || !task) return;
    if (loaded && fetching === 0) applyProgress(data);
    else pending.push(data);
  },
});

everySecond(() => {
  if (task && !FINAL.has(task.state)) renderTiming();
});
