// Home page per role (#/home): what needs attention first, with links into the role's pages.
// Usage: routed by app.js; exports mount(root, ctx).
// Annotators: their queue. Researchers: runs training or waiting, masks waiting for review,
// open studies and their participants, datasets. Admins: the same, and the accounts.

import { api } from "../lib/api.js";
import { percent, plural } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { stateBadge } from "../lib/run-display.js";

export async function mount(root, ctx) {
  const { session } = ctx;
  const user = session.user;
  if (user.role === "annotator") {
    // an annotator's home is their queue
    await import("../components/annotation-queue/annotation-queue.js");
    render(root, html`<section class="page"><h1>Welcome, ${user.username}</h1></section>`);
    const queue = Object.assign(document.createElement("annotation-queue"), { session, navigate: ctx.navigate });
    root.querySelector(".page").append(queue);
    await queue.loading;
    return;
  }
  const [running, queued, failed, reviews, studies, ds, users] = await Promise.all([
    api("/api/runs?state=running&limit=5"),
    api("/api/runs?state=queued&limit=5"),
    api("/api/runs?state=failed&limit=3"),
    api("/api/reviews?limit=1"),
    api("/api/studies"),
    api("/api/datasets"),
    user.role === "admin" ? api("/api/users") : null,
  ]);
  const images = ds.data.reduce((n, d) => n + (d.num_images || 0), 0);
  const open = studies.data.filter((s) => s.state === "open");
  const making = studies.data.filter((s) => s.state === "generating");
  render(root, html`
    <section class="page">
      <h1>Welcome, ${user.username}</h1>
      <div class="grid-cards home-cards">
        ${runsCard(running, queued, failed)}
        <div class="card home-review"><h2>Review</h2>
          <p>${reviews.count ? html`<strong>${plural(reviews.count, "mask")}</strong> waiting for review.` : "No mask is waiting for review."}</p>
          <a class="button ${reviews.count ? "primary" : ""}" href="#/review">Open the review queue</a></div>
        <div class="card home-studies"><h2>Studies</h2>
          ${open.length ? html`<ul class="plain">${open.slice(0, 5).map((s) => html`<li><a href="#/studies/${s.id}">${s.name}</a>:
            ${plural(s.num_completed, "participant")} completed of ${s.num_sessions} started</li>`)}</ul>`
            : html`<p>No study is open.</p>`}
          ${making.length ? html`<p class="muted">${plural(making.length, "study", "studies")} making stimuli.</p>` : ""}
          <a class="button" href="#/studies">All studies</a></div>
        <div class="card"><h2>Datasets</h2>
          <p>${plural(ds.count, "dataset")}, ${plural(images, "image")}.</p>
          <a class="button" href="#/datasets">Open datasets</a></div>
        ${users ? html`<div class="card home-users"><h2>Users</h2>
          <p>${plural(users.count, "account")}, ${users.data.filter((u) => u.is_active).length} active.</p>
          <a class="button" href="#/admin/users">Manage users</a></div>` : ""}
      </div>
    </section>`);
}

/** Runs training now and waiting (with their progress), and the latest failures. */
function runsCard(running, queued, failed) {
  const line = (r) => html`<li data-run="${r.id}"><a href="#/runs/${r.id}">${r.name}</a> ${stateBadge(r.state)}
    ${r.state === "running" ? html`<span class="muted">${percent(r.progress, 0)}</span>` : ""}</li>`;
  const busy = running.count + queued.count;
  return html`<div class="card home-runs"><h2>Runs</h2>
    <p>${busy ? html`<strong>${running.count}</strong> training, <strong>${queued.count}</strong> waiting.` : "No run is training or waiting."}</p>
    ${busy ? html`<ul class="plain">${[...running.data, ...queued.data].slice(0, 5).map(line)}</ul>` : ""}
    ${failed.count ? html`<p class="form-error">${plural(failed.count, "run")} failed: ${failed.data.map((r) => html`<a href="#/runs/${r.id}">${r.name}</a> `)}</p>` : ""}
    <a class="button primary" href="#/runs">Runs</a> <a class="button" href="#/queue">Queue</a></div>`;
}
