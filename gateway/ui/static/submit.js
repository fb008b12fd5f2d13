/**
 * Submit: take a folder, a .zip or a lone task.toml (picked or dropped), zip it in the
 * browser (zip.js), check it with `POST /api/v1/packages/check` (which words
 * errors exactly as a submit would), show what task.toml asks for, then
 * upload with a progress bar.
 */
import * as zip from "/ui/vendor/zip.js";
import { parseIgnore } from "/ui/ignore.js";
import { apiJson, errorOf, fillFacts, formatBytes, getToken, may, signOut, specFacts, startPage } from "./common.js";

zip.configure({ useWebWorkers: false });

const $ = (id) => document.getElementById(id);
const who = await startPage();
const drop = $("drop");
const pickStatus = $("pick-status");
const checkError = $("check-error");
const submitButton = $("submit");
const submitError = $("submit-error");
const progress = $("upload");
const uploadText = $("upload-text");

/** The package ready to submit: `{ blob, name }`. */
let ready = null;
/** Counts picks, so that a slow check of an older pick never shows. */
let generation = 0;

if (!may(who, "submitter")) {
  checkError.textContent = `Cannot submit as role '${who.role}' may not: it needs 'submitter'`;
  for (const input of drop.querySelectorAll("input")) input.disabled = true;
}

function reset() {
  generation++;
  ready = null;
  submitButton.disabled = true;
  checkError.textContent = "";
  submitError.textContent = "";
  $("summary").hidden = true;
  progress.hidden = true;
  uploadText.textContent = "";
  return generation;
}

/** Does the file start with `#!`? Browsers do not see file modes; a script is made executable. */
async function isScript(file) {
  return new TextDecoder().decode(await file.slice(0, 2).arrayBuffer()) === "#!";
}

/** The date every entry carries, so that the same folder always zips to the same bytes (as the CLI does). */
const FIXED_DATE = new Date(1980, 0, 1, 0, 0, 0);

/** Compares paths folder by folder, as a walk that sorts each folder's names meets them. */
function byFolders(a, b) {
  const x = a.split("/");
  const y = b.split("/");
  for (let i = 0; i < Math.min(x.length, y.length); i++) {
    if (x[i] !== y[i]) return x[i] < y[i] ? -1 : 1;
  }
  return x.length - y.length;
}

/** The files in zip order, each folder (`{ path }` without `file`) before what it holds. */
function withFolders(files) {
  const folders = new Set();
  for (const { path } of files) {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) folders.add(parts.slice(0, i).join("/"));
  }
  return [...[...folders].map((path) => ({ path })), ...files].sort((a, b) => byFolders(a.path, b.path));
}

/**
 * Zips `files` (`{ path, file }`, paths `/`-separated). A single top folder
 * becomes the task root and names the task. Leaves out `.git` and what
 * `.parallelicignore` names. Sorted, with one fixed date and no extra
 * fields: the same folder gives the same package, and digest, every time.
 */
async function zipFiles(files, gen) {
  const tops = new Set(files.map((f) => f.path.split("/")[0]));
  const root = tops.size === 1 && files.every((f) => f.path.includes("/")) ? [...tops][0] : "";
  const rel = files.map((f) => ({ ...f, path: root ? f.path.slice(root.length + 1) : f.path }));
  const ignoreFile = rel.find((f) => f.path === ".parallelicignore");
  const ignored = parseIgnore(ignoreFile ? await ignoreFile.file.text() : "");
  const skip = (path) => {
    const parts = path.split("/");
    for (let i = 1; i < parts.length; i++) {
      if (parts[i - 1] === ".git" || ignored(parts.slice(0, i).join("/"), true)) return true;
    }
    return ignored(path, false);
  };
  const kept = rel.filter((f) => !skip(f.path));
  const writer = new zip.ZipWriter(new zip.BlobWriter("application/zip"), {
    extendedTimestamp: false,
    lastModDate: FIXED_DATE,
  });
  let n = 0;
  for (const { path, file } of withFolders(kept)) {
    if (gen !== generation) return null;
    if (!file) {
      await writer.add(`${path}/`, undefined, { directory: true, unixMode: 0o040755 });
      continue;
    }
    pickStatus.textContent = `Zipping ${++n} of ${kept.length} files…`;
    await writer.add(path, new zip.BlobReader(file), { unixMode: (await isScript(file)) ? 0o100755 : 0o100644 });
  }
  const blob = await writer.close();
  const left = rel.length - kept.length;
  return { blob, name: root || "task", what: `${kept.length} files${left ? `, ${left} left out` : ""}` };
}

async function check(pkg, gen) {
  pickStatus.textContent = `${pkg.name}: ${pkg.what}, ${formatBytes(pkg.blob.size)}. Checking…`;
  let view;
  try {
    view = await apiJson(`/api/v1/packages/check?name=${encodeURIComponent(pkg.name)}`, {
      method: "POST",
      headers: { "content-type": "application/zip" },
      body: pkg.blob,
    });
  } catch (e) {
    if (gen === generation) checkError.textContent = e.message;
    return;
  }
  if (gen !== generation) return;
  pickStatus.textContent = `${pkg.name}: ${pkg.what}, ${formatBytes(pkg.blob.size)}.`;
  if (!view.ok) {
    checkError.textContent = view.error.message;
    return;
  }
  showSummary(view);
  ready = { blob: pkg.blob, name: view.spec.name };
  submitButton.disabled = false;
}

function showSummary(view) {
  $("summary-title").textContent = view.spec.name;
  fillFacts($("summary-list"), [
    ...specFacts(view.spec),
    [
      "Package",
      `${formatBytes(view.packageBytes)} zipped · ${view.entries} entries · ${formatBytes(view.unpackedBytes)}`,
    ],
  ]);
  $("summary").hidden = false;
}

async function take(files) {
  const gen = reset();
  if (files.length === 0) return;
  try {
    const one = files.length === 1 ? files[0] : null;
    // A lone task.toml (any *.toml picked or dropped alone) is a whole package: its task runs a command.
    const zipped = one && /\.zip$/i.test(one.path)
      ? { blob: one.file, name: one.path.replace(/\.zip$/i, "").split("/").pop(), what: "zip file" }
      : one && /\.toml$/i.test(one.path)
      ? { ...(await zipFiles([{ path: "task.toml", file: one.file }], gen)), what: "task.toml alone" }
      : await zipFiles(files, gen);
    if (zipped && gen === generation) await check(zipped, gen);
  } catch (e) {
    if (gen === generation) checkError.textContent = `Cannot read the files: ${e.message}`;
  }
}

$("pick-folder").addEventListener("change", (e) => {
  $("pick-zip").value = "";
  void take([...e.target.files].map((file) => ({ path: file.webkitRelativePath || file.name, file })));
});
$("pick-zip").addEventListener("change", (e) => {
  $("pick-folder").value = "";
  void take([...e.target.files].map((file) => ({ path: file.name, file })));
});

// Drag and drop: a folder, a zip, or a lone task.toml, dropped anywhere on the page (a drop beside the zone must not
// make the browser open the file and leave the page).
const fileOf = (entry) => new Promise((resolve, reject) => entry.file(resolve, reject));
/** Reads a dropped folder (or file) entry into `out`, recursively; readEntries answers a batch at a time. */
async function walk(entry, out) {
  if (entry.isFile) {
    out.push({ path: entry.fullPath.replace(/^\//, ""), file: await fileOf(entry) });
    return;
  }
  const reader = entry.createReader();
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    for (const child of batch) await walk(child, out);
  }
}
/** What was dropped: entries (folders and files) where the browser gives them, else plain files. */
function droppedItems(dataTransfer) {
  // Read at once: the list is emptied once the drop event's handler returns.
  const items = [...(dataTransfer.items ?? [])].filter((i) => i.kind === "file");
  return items.map((i) => ({ entry: i.webkitGetAsEntry?.() ?? null, file: i.getAsFile() }));
}
const hasFiles = (e) => [...(e.dataTransfer?.types ?? [])].includes("Files");
let dragDepth = 0;
const setOver = (on) => {
  drop.classList.toggle("over", on);
  $("drop-hint").textContent = on ? "Release to take it." : "Drop a task folder or a .zip anywhere here.";
};
document.addEventListener("dragenter", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  if (dragDepth++ === 0) setOver(true);
});
document.addEventListener("dragover", (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  e.dataTransfer.dropEffect = may(who, "submitter") ? "copy" : "none";
});
document.addEventListener("dragleave", () => {
  if (dragDepth > 0 && --dragDepth === 0) setOver(false);
});
document.addEventListener("drop", async (e) => {
  if (!hasFiles(e)) return;
  e.preventDefault();
  dragDepth = 0;
  setOver(false);
  if (!may(who, "submitter")) return;
  const dropped = droppedItems(e.dataTransfer);
  const files = [];
  try {
    for (const { entry, file } of dropped) {
      if (entry) await walk(entry, files);
      else if (file) files.push({ path: file.name, file });
    }
  } catch (err) {
    checkError.textContent = `Cannot read what was dropped: ${err.message}`;
    return;
  }
  $("pick-folder").value = "";
  $("pick-zip").value = "";
  if (files.length === 0) {
    checkError.textContent = "Nothing to take in what was dropped: drop a task folder, a .zip or a task.toml.";
    return;
  }
  await take(files);
});

submitButton.addEventListener("click", () => {
  if (!ready) return;
  submitButton.disabled = true;
  submitError.textContent = "";
  progress.hidden = false;
  progress.value = 0;
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `/api/v1/tasks?name=${encodeURIComponent(ready.name)}`);
  xhr.setRequestHeader("authorization", `Bearer ${getToken() ?? ""}`);
  xhr.setRequestHeader("content-type", "application/zip");
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    progress.value = Math.round((100 * e.loaded) / e.total);
    uploadText.textContent = `Uploading ${progress.value}% (${formatBytes(e.loaded)} of ${formatBytes(e.total)})`;
  });
  xhr.upload.addEventListener("load", () => {
    progress.value = 100;
    uploadText.textContent = "Uploaded; storing…";
  });
  xhr.addEventListener("load", async () => {
    const res = new Response(xhr.responseText, { status: xhr.status, headers: { "content-type": "application/json" } });
    if (xhr.status === 201) {
      const created = await res.json();
      uploadText.textContent = `Submitted as ${created.id}.`;
      location.assign(`/tasks/${created.id}`);
      return;
    }
    if (xhr.status === 401) return signOut("Your token is no longer valid: sign in again.");
    submitError.textContent = (await errorOf(res)).message;
    uploadText.textContent = "";
    progress.hidden = true;
    submitButton.disabled = false;
  });
  xhr.addEventListener("error", () => {
    submitError.textContent = "Cannot reach the manager: the upload did not finish.";
    progress.hidden = true;
    submitButton.disabled = false;
  });
  xhr.send(ready.blob);
});
