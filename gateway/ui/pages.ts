/**
 * The web UI's pages, rendered on the server as plain HTML (hono/html
 * escapes every value). They carry no data: the token lives in the browser's
 * session storage, so each page's script fills it in from the API and keeps it
 * live from the event stream.
 *
 * @module
 */
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { State } from "../../core/schema.ts";
import { ADMIN_PAGES, adminPage, type AdminPageName } from "./admin_pages.ts";
import { nodePage } from "./node_page.ts";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** The pages, by the path they are served at. */
export type PageName = "signin" | "submit" | "tasks" | "task" | "nodes" | "node" | "data" | AdminPageName;

const ICON = "data:image/svg+xml," +
  encodeURIComponent(
    `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><rect width="16" height="16" rx="3" fill="#0b5cad"/>` +
      `<path d="M4 4h3v3H4zM9 4h3v3H9zM4 9h3v3H4zM9 9h3v3H9z" fill="#fff"/></svg>`,
  );

const NAV: Array<{ href: string; label: string; pages: PageName[]; admin?: true }> = [
  { href: "/tasks", label: "Tasks", pages: ["tasks", "task"] },
  { href: "/submit", label: "Submit", pages: ["submit"] },
  { href: "/nodes", label: "Nodes", pages: ["nodes", "node"] },
  { href: "/data", label: "Data", pages: ["data"] },
  // Shown to admins only (common.js reveals it once it knows the role).
  { href: "/admin/users", label: "Admin", pages: ADMIN_PAGES.map((p) => p.page), admin: true },
];

function layout(page: PageName, title: string, main: Html): Html {
  const nav = page === "signin" ? "" : html`
    <nav aria-label="Main">
      ${NAV.map((n) =>
        n.admin && n.pages.includes(page)
          ? html`<a href="${n.href}" data-admin hidden aria-current="page">${n.label}</a>`
          : n.admin
          ? html`<a href="${n.href}" data-admin hidden>${n.label}</a>`
          : n.pages.includes(page)
          ? html`<a href="${n.href}" aria-current="page">${n.label}</a>`
          : html`<a href="${n.href}">${n.label}</a>`
      )}
    </nav>
    <div class="who">
      <span id="who" class="muted"></span>
      <button id="signout" type="button" class="link">Sign out</button>
    </div>
  `;
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <title>${title} · Parallelic</title>
        <link rel="icon" href="${ICON}">
        <link rel="stylesheet" href="/ui/app.css">
        <script type="module" src="/ui/${page}.js"></script>
      </head>
      <body data-page="${page}">
        <a class="skip" href="#main">Skip to content</a>
        <header class="top">
        <a class="brand" href="/tasks">Parallelic</a>
        ${nav}
      </header>
        <main id="main">
          <p id="outage" class="outage" role="status" hidden></p>
    ${main}
      </main>
      </body>
    </html>
  `;
}

const stateOptions = html`${State.options.map((s) => html`<option value="${s}">${s}</option>`)}`;

function signin(): Html {
  return layout(
    "signin",
    "Sign in",
    html`
      <section class="narrow">
        <h1>Sign in</h1>
        <p class="muted">Paste an access token. It is kept for this browser tab only, until you sign out or close it,
          unless you ask this device to remember it. On the manager's machine the admin token is in
          <code>~/.local/share/parallelic/admin-token</code>.</p>
        <p id="signin-note" class="note" role="status"></p>
        <form id="signin-form" novalidate>
          <label for="token">Access token</label>
          <input id="token" name="token" type="password" autocomplete="current-password" required
            aria-describedby="token-error">
          <p id="token-error" class="error" role="alert"></p>
          <label class="check"><input id="remember" type="checkbox" aria-describedby="remember-help">
            Remember me on this device</label>
          <p id="remember-help" class="muted small">New tabs, bookmarks and shared links then open without signing in,
            until you sign out. Not on a shared computer.</p>
          <button type="submit" class="primary">Sign in</button>
        </form>
      </section>
    `,
  );
}

function submit(): Html {
  return layout(
    "submit",
    "Submit",
    html`
      <h1>Submit a task</h1>
      <section id="drop" class="drop" aria-labelledby="drop-title" aria-describedby="drop-help">
        <h2 id="drop-title">Package</h2>
        <p id="drop-help">Drop a task folder (one holding <code>task.toml</code>), a <code>.zip</code>, or a lone
          <code>task.toml</code> (for a task that runs a <code>command</code>) here, or choose one. A folder is zipped in the browser, leaving out <code>.git</code> and what <code>.parallelicignore</code>
          names.</p>
        <div class="pickers">
          <div class="field">
            <label for="pick-folder">Task folder</label>
            <input id="pick-folder" type="file" webkitdirectory multiple>
          </div>
          <div class="field">
            <label for="pick-zip">Zip file or task.toml</label>
            <input id="pick-zip" type="file" accept=".zip,application/zip,.toml">
          </div>
        </div>
        <p id="drop-hint" class="drop-hint" aria-hidden="true">Drop a task folder or a .zip anywhere here.</p>
        <p id="pick-status" class="muted" role="status"></p>
        <p id="check-error" class="error" role="alert"></p>
      </section>
      <section id="summary" class="card" hidden aria-labelledby="summary-title">
        <h2 id="summary-title">Task</h2>
        <dl id="summary-list" class="facts"></dl>
      </section>
      <div class="submit-row">
        <button id="submit" type="button" class="primary" disabled>Submit task</button>
        <progress id="upload" max="100" value="0" hidden aria-label="Upload progress"></progress>
        <span id="upload-text" class="muted" role="status"></span>
      </div>
      <p id="submit-error" class="error" role="alert" data-page-error></p>
    `,
  );
}

function tasks(): Html {
  return layout(
    "tasks",
    "Tasks",
    html`
      <div class="page-head">
        <div>
          <h1>Tasks</h1>
          <p id="list-range" class="muted small" aria-hidden="true"></p>
        </div>
        <div class="toolbar">
          <label for="state-filter">State</label>
          <select id="state-filter"><option value="">all</option>${stateOptions}</select>
          <input id="task-search" type="search" placeholder="Name, owner or id" aria-label="Search tasks">
          <span id="live" class="live" role="status">connecting…</span>
        </div>
      </div>
      <p id="list-error" class="error" role="alert" data-page-error></p>
      <table id="tasks" class="grid-table">
        <caption class="sr-only">Tasks, newest first</caption>
        <thead>
          <tr>
            <th scope="col">Task</th>
            <th scope="col">State</th>
            <th scope="col">Owner</th>
            <th scope="col" class="col-progress">Progress</th>
            <th scope="col">Age</th>
            <th scope="col">Duration</th>
            <th scope="col"><span class="sr-only">Actions</span></th>
          </tr>
        </thead>
        <tbody></tbody>
      </table>
      <p id="empty" class="muted" hidden>No tasks here yet. <a href="/submit">Submit one</a>.</p>
      <p id="empty-filtered" class="muted" hidden></p>
      <div class="action-row pager">
        <span id="list-count" class="muted small" role="status"></span>
        <button id="older" type="button" hidden>Show older tasks</button>
      </div>
    `,
  );
}

function task(id: string): Html {
  return layout(
    "task",
    "Task",
    html`
      <div class="page-head" data-task-id="${id}">
        <div>
          <h1 id="task-name">Task</h1>
          <p class="muted"><code id="task-id">${id}</code> <span id="task-state" class="badge"></span>
            <span id="live" class="live" role="status">connecting…</span></p>
        </div>
        <div class="actions">
          <div class="action-row">
            <button id="explain" type="button" hidden>Why is this queued?</button>
            <button id="download" type="button" hidden>Download outputs (zip)</button>
            <button id="rerun-failed" type="button" hidden>Rerun failed</button>
            <button id="rerun-instance" type="button" hidden>Rerun this instance</button>
            <button id="rerun-finalize" type="button" hidden>Rerun finalize</button>
            <button id="priority" type="button" hidden>Change priority</button>
            <button id="hold" type="button" hidden>Hold</button>
            <button id="release" type="button" hidden>Release</button>
            <button id="cancel" type="button" class="danger" hidden>Cancel task</button>
            <button id="delete" type="button" class="danger" hidden>Delete task</button>
          </div>
          <p id="explain-text" class="note" role="status"></p>
          <p id="download-status" class="muted small" role="status"></p>
          <p id="action-error" class="error" role="alert"></p>
        </div>
      </div>
      <p id="load-error" class="error" role="alert" data-page-error></p>
      <p id="reason" class="note" hidden></p>
      <div id="notify" class="notify"></div>
      <div class="cards">
        <section class="card" aria-labelledby="counts-title">
          <h2 id="counts-title">Instances</h2>
          <div id="task-bar" class="bar big"></div>
          <ul id="counts" class="legend"></ul>
        </section>
        <section class="card" aria-labelledby="timing-title">
          <h2 id="timing-title">Timing</h2>
          <dl id="timing" class="facts"></dl>
        </section>
        <section class="card" aria-labelledby="spec-title">
          <h2 id="spec-title">Specification</h2>
          <dl id="spec" class="facts"></dl>
        </section>
        <section id="related" class="card" aria-labelledby="related-title" hidden>
          <h2 id="related-title">Inputs and links</h2>
          <dl class="facts stacked"></dl>
        </section>
        <section id="finalize" class="card" aria-labelledby="finalize-title">
          <h2 id="finalize-title">Finalize</h2>
          <p class="finalize-state" role="status"></p>
          <div class="action-row start">
            <button class="finalize-open" type="button" hidden>Show its log</button>
            <button class="finalize-rerun" type="button" hidden>Run finalize again</button>
          </div>
          <div class="outputs"></div>
        </section>
      </div>
      <section id="failures" class="card" aria-labelledby="failures-title" hidden>
        <div class="failures-head">
          <h2 id="failures-title">Failures</h2>
          <span class="failures-position" role="status"></span>
          <div class="action-row">
            <button class="failures-prev" type="button" aria-keyshortcuts="p">Previous failure</button>
            <button class="failures-next" type="button" aria-keyshortcuts="n">Next failure</button>
          </div>
        </div>
        <div class="failures-box">
          <table class="small-table failures-table">
            <thead>
              <tr>
                <th scope="col">Instance</th>
                <th scope="col">Params</th>
                <th scope="col">Ended</th>
                <th scope="col">Node</th>
                <th scope="col">Last stderr line</th>
              </tr>
            </thead>
            <tbody></tbody>
          </table>
        </div>
        <div class="action-row pager">
          <button class="failures-prev-page" type="button">Previous page</button>
          <span class="failures-range muted small"></span>
          <button class="failures-next-page" type="button">Next page</button>
        </div>
      </section>
      <section id="frames" class="card" aria-labelledby="frames-title" hidden>
        <h2 id="frames-title">Latest frames</h2>
        <p class="muted small">The newest succeeded instances, each with a preview of its first image output. Open
          one to see its outputs and log.</p>
        <ul class="sheet"></ul>
      </section>
      <div class="split">
        <section class="card" aria-labelledby="grid-title">
          <h2 id="grid-title">Instance grid</h2>
          <p class="muted small">Click an instance, or focus the grid and use the arrow keys and Enter.</p>
          <div id="grid-box" class="grid-box">
            <canvas id="grid" tabindex="0" role="img" aria-label="Instance grid"></canvas>
          </div>
          <p id="grid-hover" class="muted small" aria-live="polite">&nbsp;</p>
          <form id="open-instance" class="inline-form">
            <label for="instance-number">Instance number</label>
            <input id="instance-number" type="number" min="0" step="1" inputmode="numeric" required>
            <button type="submit">Open</button>
          </form>
        </section>
        <section id="instance" class="card" aria-labelledby="instance-title" hidden>
          <h2 id="instance-title">Instance</h2>
          <p id="instance-error" class="error" role="alert"></p>
          <dl id="instance-facts" class="facts"></dl>
          <h3>Attempts</h3>
          <div class="scroll-x">
            <table id="attempts" class="small-table">
              <thead>
                <tr>
                  <th scope="col">#</th>
                  <th scope="col">Node</th>
                  <th scope="col">Started</th>
                  <th scope="col">Ran for</th>
                  <th scope="col">CPU</th>
                  <th scope="col">Peak memory</th>
                  <th scope="col">Exit</th>
                  <th scope="col">Note</th>
                </tr>
              </thead>
              <tbody></tbody>
            </table>
          </div>
          <h3 id="outputs-title">Outputs</h3>
          <div id="instance-preview" class="thumb-box" hidden></div>
          <div id="instance-outputs" class="outputs"></div>
          <div class="log-head">
            <h3 id="log-title">Log</h3>
            <span id="log-status" class="muted small" role="status"></span>
          </div>
          <div class="log-tools">
            <label>Attempt <select id="log-attempt"></select></label>
            <label><input id="log-times" type="checkbox"> Timestamps</label>
            <input id="log-search" type="search" placeholder="Search the log" aria-label="Search the log">
            <button id="log-download" type="button">Download log</button>
            <span id="log-matches" class="muted small" role="status"></span>
          </div>
          <div id="log" class="log" tabindex="0" role="log" aria-labelledby="log-title"></div>
          <p class="muted small">Lines marked <span class="tag-sample">err</span> came on stderr.</p>
        </section>
      </div>
    `,
  );
}

function nodes(): Html {
  return layout(
    "nodes",
    "Nodes",
    html`
      <div class="page-head">
        <h1>Nodes</h1>
        <div class="toolbar"><span id="live" class="live" role="status">connecting…</span></div>
      </div>
      <p id="list-error" class="error" role="alert" data-page-error></p>
      <table id="nodes" class="grid-table">
        <caption class="sr-only">Compute nodes</caption>
        <thead>
          <tr>
            <th scope="col">Node</th>
            <th scope="col">State</th>
            <th scope="col">Slots used</th>
            <th scope="col">CPUs</th>
            <th scope="col">Memory</th>
            <th scope="col">GPUs</th>
            <th scope="col">Labels</th>
            <th scope="col">Last heartbeat</th>
            <th scope="col"><span class="sr-only">Actions</span></th>
          </tr>
        </thead>
        <tbody></tbody>
      </table>
      <p id="empty" class="muted" hidden>No node has joined yet. Start one with
        <code>deno task node --nats=nats://HOST:4222</code>.</p>
    `,
  );
}

function data(): Html {
  return layout(
    "data",
    "Data",
    html`
      <div class="page-head">
        <h1>Data sets</h1>
        <div class="toolbar"><button id="reload" type="button" class="small">Reload</button></div>
      </div>
      <p class="muted">Named, versioned, read-only inputs that tasks name in <code>[data]</code>. Upload one with
        <code>parallelic data put NAME FOLDER</code>.</p>
      <p id="list-error" class="error" role="alert" data-page-error></p>
      <table id="datasets" class="grid-table">
        <caption class="sr-only">Data sets and their versions</caption>
        <thead>
          <tr>
            <th scope="col">Data set</th>
            <th scope="col">Versions</th>
            <th scope="col">Size</th>
            <th scope="col">Used by</th>
          </tr>
        </thead>
        <tbody></tbody>
      </table>
      <p id="empty" class="muted" hidden>No data set yet.</p>
    `,
  );
}

const TITLES: Record<AdminPageName, string> = { users: "Users", audit: "Audit log", "join-token": "Join token" };

/** Renders a page. */
export function renderPage(page: PageName, params: { taskId?: string; nodeName?: string } = {}): Html {
  switch (page) {
    case "users":
    case "audit":
    case "join-token":
      return layout(page, TITLES[page], adminPage(page));
    case "node":
      return layout("node", `Node ${params.nodeName ?? ""}`, nodePage(params.nodeName ?? ""));
    case "signin":
      return signin();
    case "submit":
      return submit();
    case "tasks":
      return tasks();
    case "task":
      return task(params.taskId ?? "");
    case "nodes":
      return nodes();
    case "data":
      return data();
  }
}
