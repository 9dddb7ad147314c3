// The inequality tests of IGD / Duan et al. for the compared runs: a button that starts the
// evaluation on up to N test images that every run classifies correctly, a live progress bar
// while a worker runs it, then error rate against t (noise) and r (occlusion), one line per
// run, and the Gini coefficient of each run's input gradient. The latest evaluation of
// exactly these runs is shown on load.
// Usage: import "../components/inequality-panel/inequality-panel.js";   // defines <inequality-panel>
//   const panel = document.createElement("inequality-panel");
//   panel.runs = [{ id: 3, name: "pgd_at small_cnn" }, ...];
//   section.appendChild(panel);
// `runs` is a property (objects with id and name); the panel renders and loads when it is put on
// the page (or when `runs` is set while it is on it), and stops polling when it leaves the page.

import { api } from "../../lib/api.js";
import { dateTime, number, percent as pct, plural, wholePercent } from "../../lib/format.js";
import { html, raw, render } from "../../lib/html.js";
import { start as poll } from "../../lib/poll.js";
import { ensureChartStyles, lineChart } from "../line-chart/line-chart.js";
import { linkStylesheet } from "../../lib/styles.js";

const API = "/api/runs/inequality";
const POLL_MS = 1500;
const NOISE_CHARTS = [
  ["inductive_noise_added", "Inductive noise, added (top-k by input gradient)"],
  ["inductive_noise_replaced", "Inductive noise, replaced (top-k by input gradient)"],
  ["random_noise_added", "Random noise, added (k random sub-pixels)"],
];
const OCCLUSION_CHARTS = [
  ["grey", "Inductive occlusion, grey squares"],
  ["white", "Inductive occlusion, white squares"],
];

/** One line per run over the keys of a {key: error rate} map (keys are t or r as strings). */
function chart(title, xLabel, runs, ratesOf) {
  const series = runs.map((r) => ({
    name: `#${r.id}`,
    points: Object.entries(ratesOf(r) || {}).map(([k, v]) => [Number(k), v]),
  }));
  return raw(lineChart({ title, xLabel, yLabel: "error rate", yMin: 0, yMax: 1, series }));
}

function caption(ev) {
  const images = ev.result.images;
  const classes = Object.entries(images.per_class).map(([c, k]) => `${c}: ${k}`).join(", ");
  const short = images.n < images.requested
    ? html` (${images.requested} asked for; only ${images.n} ${images.n === 1 ? "is" : "are"} correct${ev.common_set ? " for every run" : ""})` : "";
  if (!ev.common_set) {
    return html`<p class="ineq-caption not-comparable"><strong>On this run's own correct images — not comparable across runs</strong>
      (${plural(images.n, "test image")} it classifies correctly, spread over the classes: ${classes})${short}.</p>`;
  }
  return html`<p class="ineq-caption">On the <strong class="ineq-n">${images.n}</strong> test images every selected run
    classifies correctly, spread over the classes (${classes})${short}; the same noise draws for every run.</p>`;
}

function results(ev, known) {
  const byId = new Map(known.map((r) => [String(r.id), r]));
  const runs = ev.run_ids.map((id) => ({ id, name: (byId.get(String(id)) || {}).name || "", scores: ev.result.runs[String(id)] || {} }));
  return html`${caption(ev)}
    <div class="charts ineq-charts">
      ${NOISE_CHARTS.map(([key, title]) => html`<div class="chart" data-test="${key}">${chart(title, "share of sub-pixels t", runs, (r) => r.scores[key])}</div>`)}
      ${OCCLUSION_CHARTS.map(([colour, title]) => html`<div class="chart" data-test="occlusion-${colour}">${chart(title, "square radius r (pixels)", runs, (r) => (r.scores.inductive_occlusion || {})[colour])}</div>`)}
    </div>
    <table class="data ineq-gini"><thead><tr><th>run</th><th class="num">Gini of |input gradient|</th><th class="num">images</th></tr></thead>
      <tbody>${runs.map((r) => html`<tr data-run="${r.id}"><td><a href="#/runs/${r.id}">#${r.id} ${r.name}</a></td>
        <td class="num">${number(r.scores.gini, 3)}</td><td class="num">${r.scores.n ?? "–"}</td></tr>`)}</tbody></table>
    <p class="muted">Gini: 0 = the gradient spread evenly, 1 = one sub-pixel holds all of it (Duan et al.: standard
      CIFAR-10 ResNet-18 about 0.58, PGD-AT about 0.73). Finished ${dateTime(ev.finished_at)}.</p>`;
}

export class InequalityPanel extends HTMLElement {
  #runs = [];
  #stop = null; // ends this rendering's polling

  /** The compared runs: [{ id, name }, ...]. Setting it while on the page renders again. */
  get runs() { return this.#runs; }
  set runs(value) {
    this.#runs = Array.isArray(value) ? value : [];
    if (this.isConnected) this.#mount();
  }

  connectedCallback() { this.#mount(); }

  disconnectedCallback() {
    if (this.#stop) this.#stop();
    this.#stop = null;
  }

  #mount() {
    this.disconnectedCallback();
    this.#stop = mountPanel(this, this.#runs);
  }
}

/** Render the panel into el and load the latest evaluation; returns a function that stops it. */
function mountPanel(el, runs) {
  let stopped = false;
  const ids = runs.map((r) => r.id);
  render(el, html`<div class="inequality-panel">
    <h2>Inequality tests (IGD / Duan et al.)</h2>
    <p class="muted">Noise on the sub-pixels the model leans on most, random noise, and occluding squares around its
      most attributed positions; error rate on test images that every selected run gets right.</p>
    <form class="row ineq-form" novalidate>
      <label class="inline">Images <input name="n" type="number" min="1" max="2000" step="1" value="200" style="width:6em"></label>
      <button type="submit" class="primary">Run inequality evaluation</button>
    </form>
    <p class="form-error" role="alert"></p>
    <div class="ineq-status" hidden><div class="row"><div class="progress" style="flex:1;max-width:480px" role="progressbar"
      aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><div style="width:0%"></div></div>
      <span class="ineq-status-text muted"></span></div></div>
    <div class="ineq-results"></div></div>`);
  const $ = (s) => el.querySelector(s);
  const button = $(".ineq-form button");
  let stopPolling = () => {};

  function showProgress(ev) {
    const share = wholePercent(ev.progress);
    $(".ineq-status").hidden = false;
    const bar = $(".ineq-status .progress");
    bar.setAttribute("aria-valuenow", String(share));
    bar.firstElementChild.style.width = `${share}%`;
    $(".ineq-status-text").textContent = ev.state === "queued" ? "queued, waiting for a worker…" : `running… ${share}%`;
  }

  /** Draw an evaluation; true while it is queued or running. */
  function show(ev) {
    const busy = ev.state === "queued" || ev.state === "running";
    button.disabled = busy;
    $(".ineq-status").hidden = !busy;
    if (busy) showProgress(ev);
    if (ev.state === "failed") $(".form-error").textContent = `The last evaluation failed: ${ev.error || "no reason given"}`;
    if (ev.state === "succeeded" && ev.result) render($(".ineq-results"), results(ev, runs));
    return busy;
  }

  /** Draw an evaluation and, while it is busy, follow it until it ends or the panel is stopped. */
  function follow(ev) {
    stopPolling();
    if (!show(ev)) return;
    stopPolling = poll(async () => {
      if (stopped || !el.isConnected) return false;
      const next = await api(`${API}/${ev.id}`);
      return !stopped && show(next);
    }, POLL_MS, {
      immediate: false,
      onError: (err) => { if (!stopped) $(".form-error").textContent = `${err.message} (retrying)`; },
      onRecover: () => { if (!stopped) $(".form-error").textContent = ""; },
    });
  }

  $(".ineq-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    stopPolling();
    $(".form-error").textContent = "";
    button.disabled = true;
    try {
      const ev = await api(API, { method: "POST", body: { run_ids: ids, n: Number($(".ineq-form [name=n]").value) } });
      if (!stopped) follow(ev);
    } catch (err) {
      $(".form-error").textContent = err.message;
      button.disabled = false;
    }
  });

  (async () => {
    if (!ids.length) return;
    try {
      const found = await api(`${API}?run_ids=${encodeURIComponent(ids.join(","))}&limit=1`);
      if (!stopped && found.data.length) follow(found.data[0]);
    } catch (err) {
      if (!stopped) $(".form-error").textContent = err.message;
    }
  })();

  return () => {
    stopped = true;
    stopPolling();
  };
}

if (!customElements.get("inequality-panel")) {
  ensureChartStyles();
  linkStylesheet(new URL("./inequality-panel.css", import.meta.url));
  customElements.define("inequality-panel", InequalityPanel);
}
