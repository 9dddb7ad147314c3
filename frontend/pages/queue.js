// The queue of background work (#/queue): the listening workers with their GPUs and what each
// is doing, the work running now (runs, inequality evaluations, studies' stimulus jobs) with
// its time left, and the work waiting, in the order the workers will take it, with its
// estimated start; "waiting for a worker" and how to start one when none is listening.
// Polled every 3 s (GET /api/queue).
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { duration, percent as pct, plural } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";

const POLL_MS = 3000;
const KINDS = { run: "training run", evaluation: "inequality evaluation", study: "stimulus job" };

/** How to add a worker, in the demo and in production (the README says the same). */
const HOW_TO_ADD = html`<div class="queue-howto">
    <p>The workers take the work in this order, each as many pieces at once as its concurrency (<code>-c</code>). To add one:</p>
    <ul>
      <li>With <code>make demo</code> running, in a second terminal in the same folder:
        <code>.venv/bin/python -m backend.demo --worker-only</code> (it uses the demo's database, queue and files).</li>
      <li>In production, on any host that reaches the database, Redis and the file store:
        <code>celery -A worker.celery_app worker -Q training,default --pool solo -c 1 -n gpu0@%h</code>,
        one per GPU (<code>-n gpu1@%h</code>, …), as <code>docker-compose.yml</code>'s worker does.</li>
    </ul></div>`;

function startText(item) {
  if (item.start_in_s === null || item.start_in_s === undefined) return html`<span class="muted">waiting for a worker</span>`;
  if (item.start_in_s < 1) return item.start_is_lower_bound ? "when the work ahead ends" : "now";
  return `${item.start_is_lower_bound ? "no less than" : "about"} ${duration(item.start_in_s)}`;
}

function gpuList(w) {
  if (!w.gpus.length) return html`<span class="muted">CPU</span>`;
  return html`${w.gpus.map((g, i) => html`${i ? ", " : ""}GPU ${g}${w.leases[g] ? html` <span class="muted">(${w.leases[g]})</span>` : " (free)"}`)}`;
}

function workersMarkup(view) {
  if (!view.listening) {
    return html`<p class="form-error queue-no-worker" role="alert">No worker is listening: the work below waits until one
      starts (a worker counts as gone after ${duration(view.silent_after_s)} without a word).</p>`;
  }
  return html`<table class="data queue-workers"><thead><tr><th>Worker</th><th>GPUs</th><th>Doing</th><th class="num">Last heard</th></tr></thead>
    <tbody>${view.workers.map((w) => html`<tr data-worker="${w.hostname}"><td>${w.hostname}</td><td>${gpuList(w)}</td>
      <td>${w.doing.length ? html`${w.doing.map((d, i) => html`${i ? ", " : ""}<a href="${d.link}">${d.name}</a>`)}` : html`<span class="muted">idle</span>`}</td>
      <td class="num">${duration(w.seen_s_ago)} ago</td></tr>`)}</tbody></table>`;
}

function runningMarkup(items) {
  if (!items.length) return html`<p class="muted">Nothing is running.</p>`;
  return html`<table class="data queue-running"><thead><tr><th>Work</th><th>Kind</th><th>Worker</th><th>GPUs</th>
      <th class="num">Progress</th><th class="num">Time left</th></tr></thead>
    <tbody>${items.map((i) => html`<tr data-kind="${i.kind}" data-id="${i.id}"><td><a href="${i.link}">${i.name}</a></td><td>${KINDS[i.kind]}</td>
      <td>${i.worker || html`<span class="muted">not said</span>`}</td><td>${i.gpus.length ? i.gpus.join(", ") : html`<span class="muted">none (CPU)</span>`}</td>
      <td class="num">${pct(i.progress)}</td>
      <td class="num">${i.time_left_s === null ? html`<span class="muted">not known yet</span>` : duration(i.time_left_s)}</td></tr>`)}</tbody></table>`;
}

function queuedMarkup(items) {
  if (!items.length) return html`<p class="muted queue-empty">Nothing is waiting.</p>`;
  return html`<table class="data queue-waiting"><thead><tr><th class="num">#</th><th>Work</th><th>Kind</th>
      <th>Expected start</th><th>Expected on</th><th class="num">Estimated length</th><th>Note</th></tr></thead>
    <tbody>${items.map((i) => html`<tr data-kind="${i.kind}" data-id="${i.id}" data-position="${i.position}">
      <td class="num">${i.position}</td><td><a href="${i.link}">${i.name}</a></td><td>${KINDS[i.kind]}</td>
      <td class="queue-start">${startText(i)}</td><td>${i.worker || html`<span class="muted">the first free worker</span>`}</td>
      <td class="num">${i.duration_s === null ? html`<span class="muted">not known</span>` : duration(i.duration_s)}</td>
      <td class="muted">${i.note}</td></tr>`)}</tbody></table>`;
}

export async function mount(root) {
  render(root, html`<section class="page wide queue-page">
      <h1>Queue</h1>
      <p class="muted">Training runs, inequality evaluations and studies' stimulus jobs share one queue. A waiting run's
        length comes from its settings at the pace recent runs of its method and model measured; its final evaluation
        is part of it.</p>
      <p class="form-error queue-error" role="alert"></p>
      <h2>Workers</h2><div class="queue-workers-box">Loading…</div>
      <h2 style="margin-top:24px">Running</h2><div class="queue-running-box"></div>
      <h2 style="margin-top:24px">Waiting</h2><div class="queue-waiting-box"></div>
      <h2 style="margin-top:24px">Adding a worker</h2>${HOW_TO_ADD}
    </section>`);
  const $ = (s) => root.querySelector(s);
  const stop = poll(async () => {
    const view = await api("/api/queue");
    if (!root.isConnected) return false;
    render($(".queue-workers-box"), html`<p class="muted queue-summary">${plural(view.listening, "worker")} listening ·
      ${view.running.length} running · ${view.queued.length} waiting</p>${workersMarkup(view)}`);
    render($(".queue-running-box"), runningMarkup(view.running));
    render($(".queue-waiting-box"), queuedMarkup(view.queued));
    return true;
  }, POLL_MS, {
    onError: (err) => { $(".queue-error").textContent = `${err.message} (retrying)`; },
    onRecover: () => { $(".queue-error").textContent = ""; },
  });
  return stop;
}
