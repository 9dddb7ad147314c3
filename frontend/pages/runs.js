// Researcher's training runs (#/runs): the runs table (components/runs-table: sort, choose
// columns, select to compare; AutoAttack at the training ε is the headline robust accuracy, PGD
// beside it, and a run that failed a gradient-masking check carries a warning), the filters
// above it (polled while a listed run is active) and the launch form (components/launch-form,
// built from the settings the API describes; #/runs?clone=<id> fills it from an earlier run),
// the sweep form (components/sweep-form: one or two settings over values and seeds, with a
// baseline arm; it opens the sweep's page) and the latest sweeps, each linked to its page.
// Usage: routed by app.js; exports mount(root, ctx). How a run reads is lib/run-display.js,
// how its settings read lib/run-settings.js.

import { api } from "../lib/api.js";
import { plural } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { configValue, loadRunSettings, settingOf } from "../lib/run-settings.js";
import { openLaunchForm } from "../components/launch-form/launch-form.js";
import { ensureChartStyles } from "../components/line-chart/line-chart.js";
import { COLUMNS } from "../components/runs-table/runs-table.js";
import "../components/sweep-form/sweep-form.js";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

function pageMarkup() {
  return html`
    <section class="page wide runs-page">
      <div class="row"><h1>Training runs</h1><span class="spacer"></span>
        <button type="button" class="compare-btn" disabled>Compare selected</button>
        <button type="button" class="new-sweep">New sweep</button>
        <button type="button" class="primary new-run">New run</button></div>
      <div class="launch"></div>
      <div class="sweep-launch"></div>
      <details class="sweeps" hidden><summary>Sweeps (<span class="sweep-count"></span>)</summary><ul class="sweep-list"></ul></details>
      <form class="row filters" aria-label="Filter runs">
        <label>Dataset <select name="dataset_id"><option value="">all</option></select></label>
        <label>Method <select name="method"><option value="">all</option></select></label>
        <label>State <select name="state"><option value="">all</option>
          ${STATES.map((s) => html`<option>${s}</option>`)}</select></label>
        <label>Tag <input name="tag" type="text" placeholder="any"></label>
        <details class="columns"><summary>Columns</summary></details>
      </form>
      <p class="form-error list-error" role="alert"></p>
      <runs-table></runs-table>
    </section>`;
}

/** The runs that pass the filters, in the table's order, polled every 3 s while one of them is
 * queued or running; the table shows them. */
class RunsList {
  constructor(root, table) {
    this.root = root;
    this.table = table;
    this.alive = true;
    this.asked = 0; // loads are numbered; see load()
    this._stopPolling = () => {};
  }

  /** Fetch and show the runs; true while one of them is queued or running (poll again). */
  async load() {
    const params = new URLSearchParams({ sort: this.table.sort });
    for (const el of this.root.querySelectorAll(".filters select, .filters input[type=text]")) {
      if (el.value.trim()) params.set(el.name, el.value.trim());
    }
    const mine = ++this.asked;
    const res = await api(`/api/runs?${params}`);
    // an answer for older filters that lands after a newer load began is dropped
    if (!this.alive || mine !== this.asked) return false;
    this.root.querySelector(".list-error").textContent = "";
    this.table.runs = res.data;
    showSelection(this.root, this.table);
    return res.data.some((r) => r.state === "queued" || r.state === "running");
  }

  /** Load now (new filters or order) and keep polling while a listed run is active. */
  watch() {
    const error = this.root.querySelector(".list-error");
    this._stopPolling();
    this._stopPolling = poll(() => this.load(), 3000, {
      onError: (err) => { if (this.alive) error.textContent = `${err.message} (retrying)`; },
      onRecover: () => { if (this.alive) error.textContent = ""; },
    });
  }

  stop() {
    this.alive = false;
    this._stopPolling();
  }
}

function showSelection(root, table) {
  const button = root.querySelector(".compare-btn");
  button.disabled = table.selected.size < 1;
  button.textContent = `Compare selected (${table.selected.size})`;
}

/** The datasets and the methods (as the API names them) into the filters; the datasets are
 * the launch form's too. Resolves to {datasets}. */
async function loadChoices(root, table) {
  let datasets = [];
  try {
    const [ds, settings] = await Promise.all([api("/api/datasets"), loadRunSettings()]);
    datasets = ds.data;
    const methods = settingOf(settings.method_setting).choices;
    root.querySelector(".filters select[name=method]").insertAdjacentHTML("beforeend", String(html`${methods.map((k) => html`<option value="${k}">${configValue(settings.method_setting, k)}</option>`)}`));
    table.methodLabel = (method) => configValue(settings.method_setting, method);
    table.draw(); // method names, now that the settings are known
  } catch (err) {
    root.querySelector(".list-error").textContent = err.message;
  }
  const dsSelect = root.querySelector(".filters select[name=dataset_id]");
  dsSelect.insertAdjacentHTML("beforeend", String(html`${datasets.map((d) => html`<option value="${d.id}">${d.name}</option>`)}`));
  return { datasets };
}

/** The filters reload the runs (the tag as it is typed, debounced); the column chooser shows
 * and hides the table's columns. Returns the cleanup. */
function bindFilters(root, list, table) {
  const form = root.querySelector(".filters");
  render(form.querySelector(".columns"), html`<summary>Columns</summary>
    ${COLUMNS.filter((c) => !c.always).map((c) => html`<label class="inline"><input type="checkbox" name="col"
      value="${c.key}" ${table.columns.has(c.key) ? "checked" : ""}> ${c.label}</label>`)}`);
  form.addEventListener("change", (e) => {
    if (e.target.name === "col") table.showColumn(e.target.value, e.target.checked);
    else list.watch();
  });
  form.addEventListener("submit", (e) => e.preventDefault());
  let tagTimer = null;
  form.querySelector("input[name=tag]").addEventListener("input", () => {
    clearTimeout(tagTimer);
    tagTimer = setTimeout(() => list.watch(), 300); // debounce the typing
  });
  return () => clearTimeout(tagTimer);
}

// ------------------------------------------------------------------ launch form

/** The launch form, empty or filled from run `cloneId`; a launch opens the run (several: compares them). */
async function openForm(root, ctx, ready, cloneId) {
  const { datasets } = await ready;
  await openLaunchForm(root.querySelector(".launch"), {
    datasets,
    cloneId,
    onError: (message) => { root.querySelector(".list-error").textContent = message; },
    onLaunched: (runs) => {
      if (runs.length === 1) ctx.navigate(`#/runs/${runs[0].id}`);
      else ctx.navigate(`#/compare?ids=${runs.map((r) => r.id).join(",")}`);
    },
  });
}

// ------------------------------------------------------------------ sweeps

/** The sweep form (its base is the launch form's fields); a launch opens the sweep's page. */
async function openSweepForm(root, ctx, ready) {
  const { datasets } = await ready;
  const holder = root.querySelector(".sweep-launch");
  holder.replaceChildren();
  const form = document.createElement("sweep-form");
  form.datasets = datasets;
  form.addEventListener("launched", (e) => ctx.navigate(`#/sweeps/${e.detail.id}`));
  holder.appendChild(form);
}

/** The latest sweeps, each linked to its page (the list is hidden while there are none). */
async function loadSweeps(root) {
  try {
    const res = await api("/api/sweeps");
    const box = root.querySelector(".sweeps");
    box.hidden = res.count === 0;
    root.querySelector(".sweep-count").textContent = String(res.count);
    render(root.querySelector(".sweep-list"), html`${res.data.map((s) => html`<li data-sweep="${s.id}">
      <a href="#/sweeps/${s.id}">#${s.id} ${s.name}</a> <span class="muted">${s.axes.map((a) => `${(settingOf(a.name) || { label: a.name }).label}: ${a.values.map((v) => configValue(a.name, v)).join(", ")}`).join("; ")};
      ${plural(s.seeds.length, "seed")}${s.baseline ? ", with a baseline arm" : ""}</span></li>`)}`);
  } catch (err) {
    root.querySelector(".list-error").textContent = err.message;
  }
}

export async function mount(root, ctx) {
  ensureChartStyles();
  render(root, pageMarkup());
  const table = root.querySelector("runs-table");
  const list = new RunsList(root, table);
  // the form and the filters need the datasets and the settings: listeners wait for them
  const ready = loadChoices(root, table);
  const unbindFilters = bindFilters(root, list, table);
  table.addEventListener("sortchange", () => list.watch());
  table.addEventListener("selectionchange", () => showSelection(root, table));
  root.querySelector(".new-run").addEventListener("click", () => openForm(root, ctx, ready, null));
  root.querySelector(".new-sweep").addEventListener("click", () => openSweepForm(root, ctx, ready));
  root.querySelector(".compare-btn").addEventListener("click", () => ctx.navigate(`#/compare?ids=${[...table.selected].join(",")}`));

  const cloneId = ctx.query.get("clone");
  list.watch();
  await ready;
  loadSweeps(root);
  if (cloneId) openForm(root, ctx, ready, cloneId);
  return () => { list.stop(); unbindFilters(); };
}
