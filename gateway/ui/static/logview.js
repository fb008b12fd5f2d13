/**
 * The log panel of the task page: one attempt at a time (a selector),
 * stdout and stderr told apart (stderr lines are marked "err", not only
 * coloured), optional timestamps, a search that keeps only matching lines,
 * a raw download, and a follow that resumes after the connection comes back
 * (it asks for the chunks after the last one it has).
 */
import { api, download, formatBytes, h, isLeaving, pageAbort } from "./common.js";

/** Lines kept on screen; older ones are dropped (the download has everything). */
const MAX_LINES = 20_000;
const RETRY_MS = [1000, 2000, 5000, 10_000];

const TIME = { hour: "2-digit", minute: "2-digit", second: "2-digit", fractionalSecondDigits: 3, hour12: false };
const timeOf = (at) => new Date(at).toLocaleTimeString(undefined, TIME);

/** Creates the log panel's logic over its elements (ids `log`, `log-status`, `log-attempt`, …). */
export function createLogView(taskId) {
  const $ = (id) => document.getElementById(id);
  const pre = $("log");
  let index = null;
  let attempt = null;
  let follow = false;
  let abort = null;
  let lastSeq = 0;
  let needle = "";
  let lineCount = 0;
  let matches = 0;
  /** Text of the line still being written, per stream. */
  const partial = { stdout: null, stderr: null };

  function lineEl(stream, at, text) {
    const hit = !needle || text.toLowerCase().includes(needle);
    if (hit) matches++;
    return h(
      "div",
      { class: `line l-${stream}`, hidden: !hit },
      h("span", { class: "ts" }, timeOf(at)),
      h("span", { class: "tag", "aria-label": stream }, stream === "stderr" ? "err" : ""),
      h("span", { class: "text" }, text),
    );
  }

  /** Adds a chunk: completes the stream's open line, then adds whole lines and a new open one. */
  function addChunk(c) {
    const atBottom = pre.scrollTop + pre.clientHeight >= pre.scrollHeight - 8;
    const parts = c.text.split("\n");
    const fragment = document.createDocumentFragment();
    const open = partial[c.stream];
    if (open) {
      const text = open.dataset.raw + parts.shift();
      open.remove();
      lineCount--;
      if (!open.hidden) matches--;
      fragment.append(lineEl(c.stream, Number(open.dataset.at), text));
      lineCount++;
      partial[c.stream] = null;
      if (parts.length === 0) {
        partial[c.stream] = keepOpen(fragment.lastChild, text, open.dataset.at);
      }
    }
    parts.forEach((text, k) => {
      const last = k === parts.length - 1;
      if (last && text === "") return;
      const el = lineEl(c.stream, c.at, text);
      fragment.append(el);
      lineCount++;
      if (last) partial[c.stream] = keepOpen(el, text, c.at);
    });
    pre.append(fragment);
    while (lineCount > MAX_LINES) {
      const first = pre.querySelector(".line");
      if (!first.hidden) matches--;
      first.remove();
      lineCount--;
      pre.dataset.clipped = "1";
    }
    if (atBottom) pre.scrollTop = pre.scrollHeight;
    renderCount();
  }

  function keepOpen(el, raw, at) {
    el.dataset.raw = raw;
    el.dataset.at = String(at);
    return el;
  }

  function renderCount() {
    $("log-matches").textContent = needle
      ? `${matches.toLocaleString()} of ${lineCount.toLocaleString()} lines match`
      : pre.dataset.clipped
      ? `last ${lineCount.toLocaleString()} lines (download for all)`
      : "";
  }

  function applySearch() {
    matches = 0;
    for (const line of pre.querySelectorAll(".line")) {
      const text = line.querySelector(".text").textContent;
      line.hidden = needle !== "" && !text.toLowerCase().includes(needle);
      if (!line.hidden) matches++;
    }
    renderCount();
  }

  /** Reads the log (from after `lastSeq`), following while asked; reconnects after a dropped connection. */
  async function run(ctrl) {
    const status = $("log-status");
    for (let failures = 0; !ctrl.signal.aborted;) {
      status.textContent = follow ? "following…" : "loading…";
      const query = `format=ndjson&attempt=${attempt}&after=${lastSeq}${follow ? "&follow=1" : ""}`;
      try {
        const res = await api(`/api/v1/tasks/${taskId}/instances/${index}/logs?${query}`, { signal: ctrl.signal });
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buffered = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          failures = 0;
          buffered += value;
          const lines = buffered.split("\n");
          buffered = lines.pop();
          for (const line of lines) {
            const chunk = JSON.parse(line);
            lastSeq = chunk.seq;
            addChunk(chunk);
          }
        }
        if (abort === ctrl) status.textContent = lineCount ? "end of log" : "no output";
        return;
      } catch (e) {
        if (ctrl.signal.aborted || isLeaving() || abort !== ctrl) return;
        // An answer from the API (the instance is gone, the token revoked) is final; a lost connection is not.
        if (e?.status || !follow) {
          status.textContent = `log stopped: ${e.message}`;
          return;
        }
        const waitMs = RETRY_MS[Math.min(failures++, RETRY_MS.length - 1)];
        status.textContent = `connection lost; trying again in ${waitMs / 1000} s…`;
        await new Promise((r) => setTimeout(r, waitMs));
      }
    }
  }

  function restart() {
    abort?.abort();
    const ctrl = pageAbort();
    abort = ctrl;
    pre.replaceChildren();
    delete pre.dataset.clipped;
    lastSeq = 0;
    lineCount = 0;
    matches = 0;
    partial.stdout = partial.stderr = null;
    renderCount();
    void run(ctrl);
  }

  $("log-attempt").addEventListener("change", () => {
    attempt = Number($("log-attempt").value);
    follow = follow && attempt === latest;
    restart();
  });
  $("log-times").addEventListener("change", () => pre.classList.toggle("show-ts", $("log-times").checked));
  let searchTimer = 0;
  $("log-search").addEventListener("input", () => {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      needle = $("log-search").value.trim().toLowerCase();
      applySearch();
    }, 150);
  });
  $("log-download").addEventListener("click", async () => {
    const button = $("log-download");
    button.disabled = true;
    try {
      const name = `${taskId}-${index}-attempt-${attempt}.log`;
      const bytes = await download(`/api/v1/tasks/${taskId}/instances/${index}/logs?attempt=${attempt}`, name);
      $("log-status").textContent = `downloaded ${formatBytes(bytes)}`;
    } catch (e) {
      $("log-status").textContent = `download failed: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });

  let latest = 0;
  return {
    /**
     * Shows instance `i` with its attempts (`history`, `current`: the one
     * running or last run); `live` while the attempt may still write. Keeps
     * the attempt chosen unless it was the latest and a new one started.
     */
    show(i, history, current, live) {
      const same = i === index;
      const wasLatest = attempt === latest;
      latest = current;
      $("log-attempt").replaceChildren(
        ...Array.from({ length: current + 1 }, (_, a) => {
          const run = history.find((r) => r.attempt === a);
          const how = run?.exitCode !== null && run?.exitCode !== undefined
            ? `exit ${run.exitCode}`
            : run?.endedAt
            ? (run.error ?? "ended")
            : "running";
          return h("option", { value: String(a) }, `Attempt ${a + 1}${run ? ` · ${run.node} · ${how}` : ""}`);
        }),
      );
      const next = same && !wasLatest ? attempt : current;
      $("log-attempt").value = String(next);
      $("log-attempt").disabled = current === 0;
      const nextFollow = live && next === current;
      if (same && next === attempt && (follow || !nextFollow)) {
        follow = nextFollow;
        return;
      }
      index = i;
      attempt = next;
      follow = nextFollow;
      restart();
    },
  };
}
