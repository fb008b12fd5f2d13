/**
 * The admin pages' bodies (users and tokens, the audit log, the join token);
 * `gateway/ui/pages.ts` lays them out. Only admins see
 * the admin pages: their scripts show anyone else a plain "admins only"
 * page, and the API refuses them (403) anyway.
 *
 * @module
 */
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";
import { AuditAction } from "../../core/audit.ts";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** The admin pages, by the path they are served at. */
export const ADMIN_PAGES = [
  { page: "users", href: "/admin/users", label: "Users and tokens" },
  { page: "audit", href: "/admin/audit", label: "Audit log" },
  { page: "join-token", href: "/admin/join-token", label: "Join token" },
] as const;

/** An admin page's name. */
export type AdminPageName = (typeof ADMIN_PAGES)[number]["page"];

function adminNav(current: AdminPageName): Html {
  return html`<nav class="subnav" aria-label="Admin">
    ${
    ADMIN_PAGES.map((p) =>
      p.page === current
        ? html`<a href="${p.href}" aria-current="page">${p.label}</a>`
        : html`<a href="${p.href}">${p.label}</a>`
    )
  }
  </nav>`;
}

function users(): Html {
  return html`
    ${adminNav("users")}
    <div class="page-head">
      <h1>Users and tokens</h1>
    </div>
    <p id="list-error" class="error" role="alert" data-page-error></p>
    <section id="secret" class="card secret" hidden aria-labelledby="secret-title" tabindex="-1">
      <h2 id="secret-title">Token</h2>
      <p class="note"><strong>Copy it now: it will not be shown again.</strong> Only its hash is stored. Lost, it
        can only be replaced (Rotate token).</p>
      <div class="secret-row">
        <label for="secret-value" class="sr-only">Token</label>
        <input id="secret-value" class="mono" type="text" readonly>
        <button id="secret-copy" type="button">Copy</button>
        <button id="secret-done" type="button" class="link">Done, hide it</button>
      </div>
      <p id="secret-status" class="muted small" role="status"></p>
    </section>
    <table id="users" class="grid-table">
      <caption class="sr-only">Users and their roles</caption>
      <thead>
        <tr>
          <th scope="col">User</th>
          <th scope="col">Role</th>
          <th scope="col">Added</th>
          <th scope="col">Token made</th>
          <th scope="col"><span class="sr-only">Actions</span></th>
        </tr>
      </thead>
      <tbody></tbody>
    </table>
    <p id="user-status" class="muted small" role="status"></p>
    <section class="card" aria-labelledby="add-title">
      <h2 id="add-title">Add a user</h2>
      <form id="add-user" class="inline-form wrap">
        <label for="new-name">Name</label>
        <input id="new-name" name="name" required maxlength="64" autocomplete="off"
          pattern="[A-Za-z0-9][A-Za-z0-9._@\\-]{0,63}" aria-describedby="new-name-help">
        <label for="new-role">Role</label>
        <select id="new-role" name="role">
          <option value="submitter">submitter</option>
          <option value="viewer">viewer</option>
          <option value="admin">admin</option>
        </select>
        <button type="submit" class="primary">Add user</button>
      </form>
      <p id="new-name-help" class="muted small">Letters, digits, <code>.</code>, <code>_</code>, <code>@</code> or
        <code>-</code>. A submitter submits and sees their own tasks; a viewer sees every task; an admin does all.</p>
      <p id="add-error" class="error" role="alert"></p>
    </section>
  `;
}

function audit(): Html {
  return html`
    ${adminNav("audit")}
    <div class="page-head">
      <h1>Audit log</h1>
    </div>
    <form id="audit-filter" class="inline-form wrap" role="search" aria-label="Filter the audit log">
      <label for="audit-user">User</label>
      <input id="audit-user" name="user" type="search" list="audit-users" autocomplete="off">
      <datalist id="audit-users"></datalist>
      <label for="audit-action">Action</label>
      <select id="audit-action" name="action">
        <option value="">all</option>
        ${AuditAction.options.map((a) => html`<option value="${a}">${a}</option>`)}
      </select>
      <button type="submit">Filter</button>
      <button id="audit-clear" type="button" class="link">Clear</button>
    </form>
    <p id="list-error" class="error" role="alert" data-page-error></p>
    <table id="audit" class="grid-table">
      <caption class="sr-only">Audit entries, newest first</caption>
      <thead>
        <tr>
          <th scope="col">Time</th>
          <th scope="col">Action</th>
          <th scope="col">User</th>
          <th scope="col">Target</th>
          <th scope="col">Detail</th>
          <th scope="col">Address</th>
        </tr>
      </thead>
      <tbody></tbody>
    </table>
    <p id="empty" class="muted" hidden></p>
    <div class="action-row pager">
      <button id="newer" type="button">Newer</button>
      <span id="audit-range" class="muted small" role="status"></span>
      <button id="older" type="button">Older</button>
    </div>
  `;
}

function joinToken(): Html {
  return html`
    ${adminNav("join-token")}
    <div class="page-head">
      <h1>Join token</h1>
    </div>
    <p>A new node needs this token the first time it joins (<code>--join-token</code>, or
      <code>PARALLELIC_JOIN_TOKEN</code>). It makes its own key then, and needs the token no more.</p>
    <p id="list-error" class="error" role="alert" data-page-error></p>
    <section class="card" aria-labelledby="token-title">
      <h2 id="token-title">Current token</h2>
      <div class="secret-row">
        <label for="join-value" class="sr-only">Join token</label>
        <input id="join-value" class="mono" type="password" readonly value="••••••••••••••••••••••••">
        <button id="join-reveal" type="button" aria-pressed="false" aria-controls="join-value">Reveal</button>
        <button id="join-copy" type="button">Copy</button>
      </div>
      <p id="join-status" class="muted small" role="status">Hidden. Each reveal or copy is recorded in the audit
        log.</p>
    </section>
    <section class="card danger-zone" aria-labelledby="rotate-title">
      <h2 id="rotate-title">Rotate</h2>
      <ul id="rotate-effects">
        <li>The current token stops working at once: a node that has <strong>not joined yet</strong> must be started
          with the new one.</li>
        <li>Nodes that <strong>already joined</strong> are not affected: they use their own keys, now and when they
          restart with the same name and work folder.</li>
      </ul>
      <button id="join-rotate" type="button" class="danger">Rotate the join token</button>
      <p id="rotate-error" class="error" role="alert"></p>
    </section>
  `;
}

/** The body of an admin page. */
export function adminPage(page: AdminPageName): Html {
  switch (page) {
    case "users":
      return users();
    case "audit":
      return audit();
    case "join-token":
      return joinToken();
  }
}
