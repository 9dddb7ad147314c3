// Researcher's training runs (#/runs): the runs table (sort, filter, choose columns, select to
// compare; AutoAttack at the training ε is the headline robust accuracy, PGD beside it, and a
// run that failed a gradient-masking check carries a warning) and the launch form
// (components/launch-form, built from the settings the API describes; #/runs?clone=<id> fills it
// from an earlier run).
// Usage: routed by app.js; exports mount(root, ctx), and the robustness labels the run and
// compare pages share (autoattackOf, pgdGrid, pgdAtTrainEps, pgdLabel, autoattackCell, pgdCell,
// failedChecks, checkName, maskingBadge). How a run's settings read is lib/run-settings.js.

import { api } from "../lib/api.js";
import { dateTime, greyLevels, percent as pct, wholePercent } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { configValue, loadRunSettings, settingOf } from "../lib/run-settings.js";
import { openLaunchForm } from "../components/launch-form/launch-form.js";
import { ensureChartStyles } from "../components/line-chart/line-chart.js";

const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];

const COLUMNS = [
  { key: "name", label: "Name", sort: "name", always: true },
  { key: "dataset", label: "Dataset" },
  { key: "method", label: "Method", sort: "method" },
  { key: "model", label: "Model" },
  { key: "eps", label: "ε" },
  { key: "seed", label: "Seed" },
  { key: "state", label: "State", sort: "state" },
  { key: "progress", label: "Progress", sort: "progress" },
  { key: "clean", label: "Clean acc.", client: (r) => finalOf(r).clean_accuracy },
  // at the run's ε: its training ε, or a standard run's evaluation ε (the cell's title says which)
  { key: "autoattack", label: "AutoAttack (n)", client: (r) => (autoattackOf(r) || {}).accuracy },
  { key: "pgd", label: "PGD", client: (r) => (pgdAtTrainEps(r) || {}).accuracy },
  { key: "agreement", label: "Salience agreement", client: (r) => (finalOf(r).salience_agreement || {}).top_mass_in_mask },
  { key: "tags", label: "Tags" },
  { key: "created", label: "Created", sort: "created_at" },
];
const DEFAULT_COLUMNS = ["name", "dataset", "method", "model", "eps", "seed", "state", "progress", "clean", "autoattack", "pgd", "created"];
// a saved column choice from before: "robust" (PGD at the training ε) became AutoAttack + PGD
const RENAMED_COLUMNS = { robust: ["autoattack", "pgd"] };

export function finalOf(run) {
  const f = run.final_metrics || {};
  return f.final || f;
}

// ------------------------------------------------------------------ robustness labels

/** The final evaluation's AutoAttack report, or null where it was not run (autoattack_n = 0,
 * or a run finished before AutoAttack was part of every run). */
export function autoattackOf(run) {
  const aa = finalOf(run).autoattack;
  return aa && aa.n ? aa : null;
}

/** The settings of the final PGD grid {steps, restarts, alpha, n}; older runs recorded only
 * their steps, and had one restart. */
export function pgdGrid(final) {
  return { steps: final.pgd_steps, restarts: 1, n: final.robust_subset, ...(final.pgd || {}) };
}

/** PGD at the training ε as {accuracy, eps, steps, restarts, alpha, n}: the grid's entry
 * when the grid holds that ε, else the PGD run on AutoAttack's images (always at it), else
 * the grid's nearest ε (its eps says which). */
export function pgdAtTrainEps(run) {
  const f = finalOf(run);
  const eps = run.config.eps;
  const grid = pgdGrid(f);
  let best = null;
  for (const [k, accuracy] of Object.entries(f.pgd_accuracy || {})) {
    if (best === null || Math.abs(Number(k) - eps) < Math.abs(best.eps - eps)) best = { ...grid, eps: Number(k), accuracy };
  }
  const onAutoattackImages = (f.autoattack || {}).pgd;
  const exact = best !== null && Math.abs(best.eps - eps) < 0.5 / 255;
  return !exact && onAutoattackImages ? onAutoattackImages : best;
}

/** "PGD-20, 2 restarts, α = ε/4, on 100 images" (short: "PGD-20×2"). */
export function pgdLabel(p, { short = false } = {}) {
  const restarts = p.restarts || 1;
  if (short) return `PGD-${p.steps}×${restarts}`;
  const alpha = p.alpha ? `, α = ${String(p.alpha).replace("eps", "ε")}` : "";
  return `PGD-${p.steps}, ${restarts} restart${restarts === 1 ? "" : "s"}${alpha}, on ${p.n} images`;
}

/** Table cell: AutoAttack accuracy and its number of images ("not run" where it was not). */
export function autoattackCell(run) {
  if (!run.final_metrics) return "–";
  const aa = autoattackOf(run);
  if (!aa) return html`<span class="muted">not run</span>`;
  return html`<span class="aa-acc" title="AutoAttack (${aa.version}, L∞) at ε ${greyLevels(aa.eps)} on ${aa.n} test images">${pct(aa.accuracy)}</span>
    <span class="muted">n ${aa.n}</span>`;
}

/** Table cell: PGD at the training ε with its steps × restarts and images. */
export function pgdCell(run) {
  const p = pgdAtTrainEps(run);
  if (!p) return "–";
  const at = Math.abs(p.eps - run.config.eps) < 0.5 / 255 ? "" : ` at ${greyLevels(p.eps)}`;
  return html`<span class="pgd-acc" title="${pgdLabel(p)} at ε ${greyLevels(p.eps)}">${pct(p.accuracy)}</span>
    <span class="muted">${pgdLabel(p, { short: true })}${at} · n ${p.n}</span>`;
}

// the gradient-masking checks of the final evaluation (Carlini et al. 2019; Athalye et al. 2018)
const CHECK_NAMES = {
  accuracy_falls_with_eps: "accuracy falls as ε grows",
  large_budget_breaks_model: "a very large ε breaks the model",
  autoattack_not_above_pgd: "AutoAttack is not above PGD",
  black_box_not_stronger: "black-box Square is not stronger than the white-box attacks",
};
export const checkName = (name) => CHECK_NAMES[name] || String(name).replaceAll("_", " ");

/** The gradient-masking checks a run failed, [{name, detail}] ([] when none failed or ran). */
export function failedChecks(run) {
  const gm = finalOf(run).gradient_masking;
  if (!gm || gm.passed !== false) return [];
  const failed = (gm.checks || []).filter((c) => !c.passed);
  return failed.length ? failed : (gm.failed || []).map((name) => ({ name, detail: "" }));
}

/** A warning badge for a run that failed a gradient-masking check; its title lists them. */
export function maskingBadge(run) {
  const failed = failedChecks(run);
  if (!failed.length) return "";
  const title = `Gradient-masking checks failed: ${failed.map((c) => `${checkName(c.name)}${c.detail ? ` (${c.detail})` : ""}`).join("; ")}`;
  return html`<span class="badge off masking-badge" title="${title}">⚠ gradient masking?</span>`;
}

export function stateBadge(state) {
  return html`<span class="state state-${state}" data-state="${state}">${state}</span>`;
}

function loadColumns() {
  try {
    const saved = JSON.parse(localStorage.getItem("runs.columns") || "null");
    if (Array.isArray(saved) && saved.length) return new Set(saved.flatMap((k) => RENAMED_COLUMNS[k] || [k]));
  } catch { /* fall back to the defaults */ }
  return new Set(DEFAULT_COLUMNS);
}

export async function mount(root, ctx) {
  ensureChartStyles();
  const state = {
    sort: "-created_at", clientSort: null, filters: { dataset_id: "", method: "", state: "", tag: "" },
    columns: loadColumns(), selected: new Set(), runs: [], datasets: [],
  };
  let stopPolling = () => {};
  let alive = true;

  render(root, html`
    <section class="page wide runs-page">
      <div class="row"><h1>Training runs</h1><span class="spacer"></span>
        <button type="button" class="compare-btn" disabled>Compare selected</button>
        <button type="button" class="primary new-run">New run</button></div>
      <div class="launch"></div>
      <form class="row filters" aria-label="Filter runs">
        <label>Dataset <select name="dataset_id"><option value="">all</option></select></label>
        <label>Method <select name="method"><option value="">all</option></select></label>
        <label>State <select name="state"><option value="">all</option>
          ${STATES.map((s) => html`<option>${s}</option>`)}</select></label>
        <label>Tag <input name="tag" type="text" placeholder="any"></label>
        <details class="columns"><summary>Columns</summary>
          ${COLUMNS.filter((c) => !c.always).map((c) => html`<label class="inline"><input type="checkbox" name="col"
            value="${c.key}" ${state.columns.has(c.key) ? "checked" : ""}> ${c.label}</label>`)}</details>
      </form>
      <p class="form-error list-error" role="alert"></p>
      <table class="data runs"><thead></thead><tbody><tr><td class="muted">Loading…</td></tr></tbody></table>
    </section>`);
  const $ = (s) => root.querySelector(s);

  // the form and the filters need the datasets and defaults: listeners wait for them
  const ready = (async () => {
    try {
      const [ds, settings] = await Promise.all([api("/api/datasets"), loadRunSettings()]);
      state.datasets = ds.data;
      const methods = settingOf(settings.method_setting).choices;
      $(".filters select[name=method]").insertAdjacentHTML("beforeend", String(html`${methods.map((k) => html`<option value="${k}">${configValue(settings.method_setting, k)}</option>`)}`));
    } catch (err) {
      $(".list-error").textContent = err.message;
    }
    if (state.runs.length) drawTable(); // method names, now that the settings are known
    const dsSelect = $(".filters select[name=dataset_id]");
    dsSelect.insertAdjacentHTML("beforeend", String(html`${state.datasets.map((d) => html`<option value="${d.id}">${d.name}</option>`)}`));
  })();

  $(".filters").addEventListener("change", (e) => {
    if (e.target.name === "col") {
      if (e.target.checked) state.columns.add(e.target.value); else state.columns.delete(e.target.value);
      localStorage.setItem("runs.columns", JSON.stringify([...state.columns]));
      drawTable();
      return;
    }
    state.filters[e.target.name] = e.target.value.trim();
    watch();
  });
  $(".filters").addEventListener("submit", (e) => e.preventDefault());
  $(".filters input[name=tag]").addEventListener("input", (e) => {
    state.filters.tag = e.target.value.trim();
    clearTimeout(tagTimer);
    tagTimer = setTimeout(watch, 300); // debounce the typing
  });
  let tagTimer = null;
  $(".new-run").addEventListener("click", () => openForm(null));
  $(".compare-btn").addEventListener("click", () => ctx.navigate(`#/compare?ids=${[...state.selected].join(",")}`));

  /** Fetch and draw the table; true while a run in it is queued or running (poll again). */
  async function load() {
    const params = new URLSearchParams({ sort: state.sort });
    for (const [k, v] of Object.entries(state.filters)) if (v) params.set(k, v);
    const res = await api(`/api/runs?${params}`);
    if (!alive) return false;
    state.runs = res.data;
    $(".list-error").textContent = "";
    drawTable();
    return state.runs.some((r) => r.state === "queued" || r.state === "running");
  }

  /** Load now (new filters or sort) and keep polling while a listed run is active. */
  function watch() {
    stopPolling();
    stopPolling = poll(load, 3000, {
      onError: (err) => { if (alive) $(".list-error").textContent = `${err.message} (retrying)`; },
      onRecover: () => { if (alive) $(".list-error").textContent = ""; },
    });
  }

  function cell(key, r) {
    switch (key) {
      case "name": return html`<a href="#/runs/${r.id}">${r.name || `run ${r.id}`}</a> ${maskingBadge(r)}`;
      case "dataset": return r.dataset_name;
      case "method": return configValue("method", r.method);
      case "model": return r.config.model;
      case "eps": return r.method === "standard"
        ? html`<span class="muted" title="standard training has no training ε; it is evaluated at ${greyLevels(r.config.eps)}">–</span>`
        : greyLevels(r.config.eps);
      case "seed": return r.config.seed;
      case "state": return stateBadge(r.state);
      case "progress": return html`<div class="progress" title="epoch ${r.current_epoch} of ${r.total_epochs}"><div style="width:${wholePercent(r.progress)}%"></div></div>`;
      case "clean": return pct(finalOf(r).clean_accuracy);
      case "autoattack": return autoattackCell(r);
      case "pgd": return pgdCell(r);
      case "agreement": return pct((finalOf(r).salience_agreement || {}).top_mass_in_mask);
      case "tags": return (r.tags || []).join(", ");
      case "created": return dateTime(r.created_at);
      default: return "";
    }
  }

  function drawTable() {
    const cols = COLUMNS.filter((c) => c.always || state.columns.has(c.key));
    let rows = [...state.runs];
    if (state.clientSort) {
      const col = COLUMNS.find((c) => c.key === state.clientSort.key);
      const v = (r) => { const x = col.client(r); return Number.isFinite(x) ? x : -Infinity; };
      rows.sort((a, b) => (v(a) - v(b)) * state.clientSort.dir);
    }
    const arrow = (c) => {
      if (c.sort && !state.clientSort && state.sort.replace("-", "") === c.sort) return state.sort.startsWith("-") ? " ▼" : " ▲";
      if (c.client && state.clientSort && state.clientSort.key === c.key) return state.clientSort.dir < 0 ? " ▼" : " ▲";
      return "";
    };
    render($("table.runs thead"), html`<tr><th><span class="muted" title="select to compare">✓</span></th>
      ${cols.map((c) => html`<th data-col="${c.key}" class="${c.sort || c.client ? "sortable" : ""}"
        style="${c.sort || c.client ? "cursor:pointer" : ""}">${c.label}${arrow(c)}</th>`)}</tr>`);
    if (!rows.length) {
      render($("table.runs tbody"), html`<tr><td colspan="${cols.length + 1}" class="muted">No runs match. Launch one with “New run”.</td></tr>`);
    } else {
      render($("table.runs tbody"), html`${rows.map((r) => html`<tr data-run="${r.id}">
        <td><input type="checkbox" class="pick" value="${r.id}" aria-label="select run ${r.id}" ${state.selected.has(r.id) ? "checked" : ""}></td>
        ${cols.map((c) => html`<td class="col-${c.key}">${cell(c.key, r)}</td>`)}</tr>`)}`);
    }
    $(".compare-btn").disabled = state.selected.size < 1;
    $(".compare-btn").textContent = `Compare selected (${state.selected.size})`;
  }

  $("table.runs").addEventListener("click", (e) => {
    const th = e.target.closest("th[data-col]");
    if (th) {
      const col = COLUMNS.find((c) => c.key === th.dataset.col);
      if (col.sort) {
        state.clientSort = null;
        state.sort = state.sort === `-${col.sort}` ? col.sort : `-${col.sort}`;
        watch();
      } else if (col.client) {
        const dir = state.clientSort && state.clientSort.key === col.key ? -state.clientSort.dir : -1;
        state.clientSort = { key: col.key, dir };
        drawTable();
      }
    }
  });
  $("table.runs").addEventListener("change", (e) => {
    if (!e.target.classList.contains("pick")) return;
    const id = Number(e.target.value);
    if (e.target.checked) state.selected.add(id); else state.selected.delete(id);
    drawTable();
  });

  // ------------------------------------------------------------------ launch form

  async function openForm(cloneId) {
    await ready;
    await openLaunchForm($(".launch"), {
      datasets: state.datasets,
      cloneId,
      onError: (message) => { $(".list-error").textContent = message; },
      onLaunched: (runs) => {
        if (runs.length === 1) ctx.navigate(`#/runs/${runs[0].id}`);
        else ctx.navigate(`#/compare?ids=${runs.map((r) => r.id).join(",")}`);
      },
    });
  }

  const cloneId = ctx.query.get("clone");
  watch();
  await ready;
  if (cloneId) openForm(cloneId);
  return () => { alive = false; stopPolling(); clearTimeout(tagTimer); };
}
