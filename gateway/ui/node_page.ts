/**
 * The body of a node's page (`/nodes/{name}`): its use over the last hour
 * (charts drawn by `static/node.js` from `GET /api/v1/nodes/{name}/usage`)
 * and its facts; `gateway/ui/pages.ts` lays it out.
 *
 * @module
 */
import { html } from "hono/html";
import type { HtmlEscapedString } from "hono/utils/html";

type Html = HtmlEscapedString | Promise<HtmlEscapedString>;

/** The body of a node's page: its facts and its use over the last hour. */
export function nodePage(name: string): Html {
  return html`
    <div class="page-head" data-node-name="${name}">
      <div>
        <p class="muted small"><a href="/nodes">Nodes</a> /</p>
        <h1 id="node-name">${name}</h1>
        <p class="muted"><span id="node-state" class="badge"></span>
          <span id="live" class="live" role="status">connecting…</span></p>
      </div>
    </div>
    <p id="load-error" class="error" role="alert" data-page-error></p>
    <section class="card" aria-labelledby="usage-title">
      <div class="usage-head">
        <h2 id="usage-title">Use over the last hour</h2>
        <span id="usage-status" class="muted small" role="status"></span>
      </div>
      <p class="muted small">One point per 30 seconds, from the node's heartbeats; kept in the manager's memory, so
        the history starts again when the manager restarts.</p>
      <div id="usage-charts" class="usage-charts"></div>
    </section>
    <section class="card node-facts" aria-labelledby="facts-title">
      <h2 id="facts-title">Node</h2>
      <dl id="node-facts" class="facts"></dl>
    </section>
  `;
}
