/**
 * Shared by every page: the token (kept in sessionStorage, and in
 * localStorage when the user asks this device to remember it; never in a URL),
 * API calls, the live event stream, the header, and formatting.
 */
import { takeEvents } from "/ui/sse.js";

const TOKEN_KEY = "parallelic.token";

/** The states an instance or a task can be in, in display order. */
export const STATES = ["succeeded", "failed", "running", "cancelled", "queued"];
/** States in which nothing more happens. */
export const FINAL = new Set(["succeeded", "failed", "cancelled"]);

/** The token of this browser tab, else the one this device remembers, or null. */
export function getToken() {
  return sessionStorage.getItem(TOKEN_KEY) ?? localStorage.getItem(TOKEN_KEY);
}

/**
 * Keeps the token for this tab; with `remember`, also on this device
 * (localStorage) so that new tabs, bookmarks and shared links open signed in.
 */
export function setToken(token, remember = false) {
  sessionStorage.setItem(TOKEN_KEY, token);
  if (remember) localStorage.setItem(TOKEN_KEY, token);
  else localStorage.removeItem(TOKEN_KEY);
}

/** Forgets the token (in this tab and on this device) and goes to the sign-in page, coming back here afterwards. */
export function signOut(reason = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  localStorage.removeItem(TOKEN_KEY);
  const here = location.pathname + location.search + location.hash;
  const query = new URLSearchParams({ next: here });
  if (reason) query.set("reason", reason);
  location.replace(`/signin?${query}`);
}

/** What a call says when the manager cannot be reached at all (not an answer from it). */
export const UNREACHABLE = "The manager cannot be reached: try again once it is back.";

/** An error the API answered with: `code` and `message` as the API words them. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
  }
}

/** Turns a non-OK response into an {@link ApiError}. */
export async function errorOf(res) {
  let body = null;
  try {
    body = await res.json();
  } catch { /* not JSON */ }
  const e = body?.error;
  return new ApiError(res.status, e?.code ?? "http_error", e?.message ?? `${res.status} ${res.statusText}`);
}

/**
 * Calls the API with this tab's token. A 401 signs out (the token is no longer
 * valid); other errors throw an {@link ApiError}. Answers are not cached unless
 * `init.cache` says otherwise (previews revalidate theirs with `"no-cache"`).
 */
export async function api(path, init = {}) {
  const headers = new Headers(init.headers);
  headers.set("authorization", `Bearer ${getToken() ?? ""}`);
  let res;
  try {
    res = await fetch(path, { ...init, headers, cache: init.cache ?? "no-store" });
  } catch (e) {
    // fetch() says only "Failed to fetch": say what it means.
    if (e instanceof TypeError) {
      markStale(Date.now());
      throw new ApiError(0, "unreachable", UNREACHABLE);
    }
    throw e;
  }
  // An answer: the manager is reachable again (pages without a live stream learn it here).
  if (document.body.classList.contains("stale")) markStale(null);
  if (res.status === 401) {
    signOut("Your token is no longer valid: sign in again.");
    throw await errorOf(res);
  }
  if (!res.ok) throw await errorOf(res);
  return res;
}

/** {@link api}, returning the JSON body. */
export async function apiJson(path, init) {
  return await (await api(path, init)).json();
}

/** Every stream and follow this page opened, so that leaving the page ends them quietly. */
const openStreams = new Set();
let leaving = false;
addEventListener("pagehide", () => {
  leaving = true;
  for (const c of openStreams) c.abort();
});

/** An AbortController that ends when the page is left. */
export function pageAbort() {
  const c = new AbortController();
  openStreams.add(c);
  c.signal.addEventListener("abort", () => openStreams.delete(c));
  return c;
}

/** True once the page is being left (streams end then on purpose). */
export function isLeaving() {
  return leaving;
}

/**
 * Opens the live event stream (`/api/v1/events`) with fetch, so that the token
 * travels in a header. Calls `onReady` on every (re)connection, before any
 * event of that connection is handled, and `onEvent(kind, data)` per event.
 * Reconnects by itself, backing off up to 15 s.
 */
/**
 * Says plainly, at the top of the page, that the manager cannot be reached
 * since `sinceMs` and that what the page shows is from before (or, with
 * null, that it is back: then outage errors shown anywhere are cleared).
 */
function markStale(sinceMs) {
  const banner = document.getElementById("outage");
  if (!banner) return;
  if (sinceMs === null) {
    banner.hidden = true;
    document.body.classList.remove("stale");
    for (const el of document.querySelectorAll("main .error")) if (el.textContent === UNREACHABLE) el.textContent = "";
    return;
  }
  if (!banner.hidden) return;
  banner.textContent = `The manager cannot be reached since ${new Date(sinceMs).toLocaleTimeString()}. ` +
    "What this page shows is from before then and may be out of date; it updates by itself once the manager is back.";
  banner.hidden = false;
  document.body.classList.add("stale");
}

export function liveEvents(query, { onReady, onEvent }) {
  const status = document.getElementById("live");
  const show = (on, text) => {
    if (!status) return;
    status.textContent = text;
    status.classList.toggle("on", on);
    status.classList.toggle("off", !on);
  };
  let delayMs = 1000;
  const run = async () => {
    const ctrl = pageAbort();
    try {
      const res = await api(`/api/v1/events?${new URLSearchParams(query)}`, {
        headers: { accept: "text/event-stream" },
        signal: ctrl.signal,
      });
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      let queue = Promise.resolve();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        const { events, rest } = takeEvents(buffer + value);
        buffer = rest;
        for (const { kind, data } of events) {
          const payload = JSON.parse(data);
          if (kind === "ready") {
            delayMs = 1000;
            show(true, "live");
            markStale(null);
            queue = queue.then(() => onReady()).catch(reportError);
          } else {
            queue = queue.then(() => onEvent(kind, payload)).catch(reportError);
          }
        }
      }
    } catch (e) {
      if (isLeaving() || e?.status === 401) return;
      // Unreachable (status 0) or a broken stream: the banner says so, and the stream is tried again.
      if (e instanceof ApiError && e.status > 0 && e.status < 500) return reportError(e);
      if (!(e instanceof TypeError) && e?.name !== "AbortError" && e?.status !== 0) reportError(e);
    } finally {
      ctrl.abort();
    }
    if (isLeaving()) return;
    show(false, "reconnecting…");
    markStale(Date.now());
    setTimeout(run, delayMs);
    delayMs = Math.min(delayMs * 2, 15_000);
  };
  void run();
}

/** Shows an unexpected error at the top of the page (never a blank page). */
export function reportError(e) {
  if (isLeaving()) return;
  const target = document.querySelector("[data-page-error]");
  if (target) target.textContent = e?.message ?? String(e);
}

/**
 * Creates an element: `h("a", { href: "/x", class: "y" }, "text", child)`.
 * Properties starting with `on` are listeners; `dataset` sets data attributes.
 */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props ?? {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") el.className = v;
    else if (k === "dataset") Object.assign(el.dataset, v);
    else if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  el.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return el;
}

/** A count with the reader's thousands separators: `10,000`. */
export function formatCount(n) {
  return Number(n).toLocaleString();
}

/** A state badge. */
export function badge(state) {
  return h("span", { class: `badge s-${state}` }, state);
}

/** A stacked progress bar of instance counts (queued is the background). */
export function progressBar(counts, total, big = false) {
  const parts = ["succeeded", "failed", "running", "cancelled"].filter((s) => counts[s] > 0);
  const label = STATES.map((s) => `${formatCount(counts[s])} ${s}`).join(", ");
  return h(
    "div",
    { class: big ? "bar big" : "bar", role: "img", "aria-label": label, title: label },
    parts.map((s) => {
      const seg = h("span", { class: `seg-${s}` });
      seg.style.width = `${(100 * counts[s]) / Math.max(1, total)}%`;
      return seg;
    }),
  );
}

/** `1.2 GiB`. */
export function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  do {
    v /= 1024;
    u++;
  } while (v >= 1024 && u < units.length - 1);
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** `3 h 4 m`, `12 s`, `350 ms`. */
export function formatDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) return "–";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} m ${s % 60} s`;
  const hours = Math.floor(m / 60);
  if (hours < 48) return `${hours} h ${m % 60} m`;
  return `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

/** `5 s ago`. */
export function formatAge(at, now = Date.now()) {
  if (!at) return "–";
  const ms = now - at;
  return ms < 1500 ? "just now" : `${formatDuration(ms).split(" ").slice(0, 2).join(" ")} ago`;
}

/** A local date and time. */
export function formatTime(at) {
  return at ? new Date(at).toLocaleString() : "–";
}

/** How long a task or attempt ran (still running: until now). */
export function runTime(startedAt, endedAt, now = Date.now()) {
  return startedAt ? formatDuration((endedAt ?? now) - startedAt) : "–";
}

/** Fills a `<dl>` with `[term, value]` pairs (values may be nodes). */
export function fillFacts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

/**
 * Sets up the header (who is signed in, sign out) and returns the caller
 * (`{ user, role }`); sends to the sign-in page when there is no token.
 */
export async function startPage() {
  if (!getToken()) {
    signOut();
    return new Promise(() => {});
  }
  document.getElementById("signout")?.addEventListener("click", () => signOut());
  const who = await apiJson("/api/v1/whoami");
  const el = document.getElementById("who");
  if (el) el.textContent = `${who.user} (${who.role})`;
  // Links to admin pages are there for admins only.
  if (who.role === "admin") { for (const a of document.querySelectorAll("[data-admin]")) a.hidden = false; }
  return who;
}

/** May this role do what needs `role`? */
export function may(who, role) {
  const rank = { viewer: 0, submitter: 1, admin: 2 };
  return rank[who.role] >= rank[role];
}

/** Calls `fn` once a second while the page is visible (clocks on screen only; no network). */
export function everySecond(fn) {
  setInterval(() => {
    if (document.visibilityState === "visible") fn();
  }, 1000);
}

/** `forest, city` or `1, 2, … 240 (240 values)`. */
export function describeAxis(axis) {
  const v = axis.values;
  return v.length <= 6 ? v.join(", ") : `${v[0]}, ${v[1]}, … ${v.at(-1)} (${v.length} values)`;
}

/** The `[term, value]` facts of a task specification, for {@link fillFacts}. */
export function specFacts(spec) {
  const labels = Object.entries(spec.labels).map(([k, v]) => `${k}=${v}`).join(", ");
  const env = Object.keys(spec.env);
  const memory = spec.memoryBytes ? formatBytes(spec.memoryBytes) : "any memory";
  return [
    spec.command
      ? ["Command", h("code", {}, spec.command)]
      : ["Entrypoint", h("code", {}, [spec.entrypoint, ...spec.args].join(" "))],
    ["Workdir", h("code", {}, spec.workdir)],
    ["Instances", formatCount(spec.instances)],
    ...spec.matrix.map((a) => [`Matrix ${a.name}`, describeAxis(a)]),
    ["Resources", `${spec.cpus} cpu · ${memory} · ${spec.gpus} gpu`],
    ...(labels ? [["Placement", labels]] : []),
    ["Timeout", spec.timeoutMs ? formatDuration(spec.timeoutMs) : "none"],
    ["Retries", String(spec.retries)],
    ...(spec.maxRunning ? [["Max running", `${spec.maxRunning} at once`]] : []),
    ...(spec.chunk > 1 ? [["Chunk", `${spec.chunk} instances per process`]] : []),
    ...(spec.after ? [["After", `${spec.after.tasks.join(", ")} (when ${spec.after.when})`]] : []),
    ["Priority", String(spec.priority)],
    ...(env.length ? [["Environment", env.join(", ")]] : []),
  ];
}

/** May `who` delete this task? Only finished ones, by submitters (their own: the API checks) and admins. */
export function mayDelete(who, task) {
  return FINAL.has(task.state) && may(who, "submitter");
}

/**
 * Asks, then deletes a finished task (`DELETE /api/v1/tasks/{id}`): its
 * outputs, logs and record. Resolves true once deleted, false when the user
 * said no; throws the API's error.
 */
export async function deleteTask(task) {
  if (!confirm(`Delete task ${task.name} (${task.id})? Its outputs and logs are removed for good.`)) return false;
  await api(`/api/v1/tasks/${task.id}`, { method: "DELETE" });
  return true;
}

/**
 * Downloads what `path` answers as a file: fetched with the token in a header,
 * then saved from an object URL (the token never goes in a URL). Resolves to
 * the byte count.
 */
export async function download(path, fallbackName) {
  const res = await api(path);
  const name = /filename="([^"]+)"/.exec(res.headers.get("content-disposition") ?? "")?.[1] ?? fallbackName;
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  try {
    const a = h("a", { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
  } finally {
    setTimeout(() => URL.revokeObjectURL(url), 60_000);
  }
  return blob.size;
}
