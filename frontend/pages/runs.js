// Researcher's training runs (#/runs): the runs table (sort, filter, choose columns, select to
// compare; AutoAttack at the training ε is the headline robust accuracy, PGD beside it, and a
// run that failed a gradient-masking check carries a warning) and the launch form (per-field
// errors from the server; #/runs?clone=<id> fills it from an earlier run).
// Usage: routed by app.js; exports mount(root, ctx), and the robustness labels the run and
// compare pages share (autoattackOf, pgdGrid, pgdAtTrainEps, pgdLabel, autoattackCell, pgdCell,
// failedChecks, checkName, maskingBadge) and how a run's settings read (configEntries,
// configValue: only those that apply to its method, budgets in grey levels /255).

import { api, ApiError } from "../lib/api.js";
import { dateTime, greyLevels, percent as pct, round, wholePercent } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { ensureChartStyles } from "../components/line-chart/line-chart.js";

const METHOD_NAMES = {
  standard: "Standard", pgd_at: "PGD-AT", sip_at: "SIP-AT", part: "PART", igd: "IGD", fast_sip_at: "Fast SIP-AT",
};
// what the launch form offers comes from GET /api/runs/defaults (worker.contract.choices)
const PRECISION_NAMES = { fp32: "fp32", bf16: "bf16 (autocast; GPUs since Ampere)", fp16: "fp16 (autocast + gradient scaler)" };
const LOADER_NAMES = { auto: "auto (stream above 2 GiB decoded)", memory: "decoded once into memory", stream: "streamed from storage by loader workers" };
const STATES = ["queued", "running", "succeeded", "failed", "cancelled"];
// fields entered in grey levels (x/255) and sent in pixel units
const BUDGETS = new Set(["eps", "alpha", "part_eps_low"]);

// ---------------------------------------------------------------- a run's settings, as read

const PGD_TRAINED = new Set(["pgd_at", "sip_at", "part", "igd"]); // a multi-step attack in training
const SIP = new Set(["sip_at", "fast_sip_at"]);
const AUGMENT = (c) => (c.augment === false ? "off" : c.hflip === false ? "random crop" : "random crop and horizontal flip");

/** A setting's value as people read it: budgets in grey levels, lists joined. */
export function configValue(key, value) {
  if (value === null || value === undefined) return "none";  // e.g. no mask set, no teacher
  if (BUDGETS.has(key)) return greyLevels(value);
  if (key === "eval_eps" && Array.isArray(value)) return value.map(greyLevels).join(", ");
  if (key === "method") return METHOD_NAMES[value] || value;
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.join(", ");
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** The settings that apply to a run's method, in reading order: [{key, label, value}]. A
 * standard run has no training ε (its ε is where AutoAttack and the per-epoch check attack);
 * PART's, IGD's and SIP-AT's own settings show only on their runs. */
export function configEntries(config) {
  const c = config || {};
  const m = c.method;
  const rows = [];
  const add = (key, label, value = configValue(key, c[key])) => { if (key in c) rows.push({ key, label, value }); };
  add("method", "method");
  add("model", "model");
  add("seed", "seed");
  if (m === "standard") {
    add("eps", "evaluation ε (AutoAttack, per-epoch check)");
  } else {
    add("eps", "training ε");
    if (PGD_TRAINED.has(m)) { add("alpha", "PGD step α"); add("steps", "PGD steps"); }
    add("eps_warmup_epochs", "ε warm-up (epochs)", c.eps_warmup_epochs ? String(c.eps_warmup_epochs) : "off");
  }
  if (m === "fast_sip_at") add("fast_attack", "single step", c.fast_attack === "fgsm_rs" ? "FGSM-RS" : "N-FGSM");
  if (SIP.has(m)) {
    add("mask_source", "mask source");
    if (c.mask_source === "human" || !c.mask_source) add("mask_set_id", "mask set", c.mask_set_id ? `#${c.mask_set_id}` : "none");
    else add("auto_mask_run_id", "maps from run", c.auto_mask_run_id ? `#${c.auto_mask_run_id}` : "none");
    add("mask_fraction", "share of images with a map");
    add("mask_threshold", "binarise threshold");
  }
  if (m === "part") { add("part_warmup_epochs", "PART warm-up (epochs)"); add("part_eps_low", "PART low budget ε"); }
  if (m === "igd") {
    add("igd_teacher_run_id", "teacher run", c.igd_teacher_run_id ? `#${c.igd_teacher_run_id}` : "none");
    add("igd_lambda", "IGD λ");
    add("igd_grad_point", "IGD gradient at");
  }
  add("epochs", "epochs");
  add("batch_size", "batch size");
  add("lr", "learning rate");
  add("schedule", "schedule");
  add("momentum", "momentum");
  add("weight_decay", "weight decay");
  add("image_size", "image size (px)", c.image_size ? String(c.image_size) : "as stored");
  add("augment", "augmentation", AUGMENT(c));
  add("eval_eps", "PGD evaluation at ε");
  add("eval_subset", "PGD test images", c.eval_subset === 0 ? "all" : configValue("eval_subset", c.eval_subset));
  add("eval_steps", "PGD steps (final)");
  add("eval_restarts", "PGD restarts (final)");
  add("epoch_eval_steps", "PGD steps (per-epoch check)");
  add("autoattack_n", "AutoAttack images", c.autoattack_n === null ? "device default (1000 GPU, 200 CPU)" : c.autoattack_n === 0 ? "skipped" : String(c.autoattack_n));
  add("precision", "precision");
  add("compile", "torch.compile");
  add("data_loader", "training images", LOADER_NAMES[c.data_loader] || configValue("data_loader", c.data_loader));
  add("gpus", "GPUs", c.gpus > 1 ? `${c.gpus} (one process each, DistributedDataParallel)` : configValue("gpus", c.gpus));
  if (c.gpus > 1) add("sync_batchnorm", "SyncBatchNorm");
  return rows;
}

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
    columns: loadColumns(), selected: new Set(), runs: [], datasets: [], defaults: {},
    choices: { method: Object.keys(METHOD_NAMES), model: [], precision: ["fp32"], data_loader: ["auto"], gpus: [1] },
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
        <label>Method <select name="method"><option value="">all</option>
          ${Object.entries(METHOD_NAMES).map(([k, v]) => html`<option value="${k}">${v}</option>`)}</select></label>
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
      const [ds, defaults] = await Promise.all([api("/api/datasets"), api("/api/runs/defaults")]);
      state.datasets = ds.data;
      state.defaults = defaults.defaults;
      state.choices = defaults.choices;
    } catch (err) {
      $(".list-error").textContent = err.message;
    }
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
      case "method": return METHOD_NAMES[r.method] || r.method;
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
    let values = { ...state.defaults, seed: 0, dataset_id: state.datasets[0] ? state.datasets[0].id : "" };
    let clonedFrom = null;
    if (cloneId) {
      try {
        const c = await api(`/api/runs/${cloneId}/clone`);
        values = { ...values, ...Object.fromEntries(Object.entries(c.form).filter(([, v]) => v !== null)) };
        clonedFrom = c.cloned_from_id;
      } catch (err) {
        $(".list-error").textContent = err.message;
      }
    }
    const v = (k) => (values[k] === undefined || values[k] === null ? "" : values[k]);
    const budget = (k) => (values[k] === undefined || values[k] === null ? "" : round(values[k] * 255, 3));
    const err = (...names) => html`<span class="field-error" data-for="${names.join(" ")}"></span>`;
    const num = (name, label, attrs = "") => html`<label>${label}<input type="number" name="${name}" value="${BUDGETS.has(name) ? budget(name) : v(name)}" step="any" ${attrs}>${err(name)}</label>`;
    render($(".launch"), html`
      <form class="card launch-form" novalidate aria-label="Launch a training run">
        <h2>${clonedFrom ? `New run (clone of run ${clonedFrom})` : "New run"}</h2>
        <fieldset><legend>What</legend><div class="fields">
          <label>Name<input type="text" name="name" value="${v("name")}" maxlength="200" placeholder="optional">${err("name")}</label>
          <label>Dataset<select name="dataset_id">${state.datasets.map((d) => html`<option value="${d.id}" ${String(d.id) === String(values.dataset_id) ? "selected" : ""}>${d.name}</option>`)}</select>${err("dataset_id")}</label>
          <label>Method<select name="method">${state.choices.method.map((k) => html`<option value="${k}" ${k === values.method ? "selected" : ""}>${METHOD_NAMES[k] || k}</option>`)}</select>${err("method")}</label>
          <label>Model<select name="model">${state.choices.model.map((m) => html`<option ${m === values.model ? "selected" : ""}>${m}</option>`)}</select>${err("model")}</label>
          <label>Seed(s)<input type="text" name="seeds" value="${values.seeds && values.seeds.length ? values.seeds.join(", ") : v("seed")}" placeholder="0 or 0, 1, 2">${err("seed", "seeds")}</label>
          <label>Tags<input type="text" name="tags" value="${(values.tags || []).join(", ")}" placeholder="comma separated">${err("tags")}</label>
        </div></fieldset>
        <fieldset class="attack"><legend>Attack (ε, step in grey levels /255)</legend><div class="fields">
          <label><span class="eps-label">ε (/255)</span><input type="number" name="eps" value="${budget("eps")}" step="any">${err("eps")}</label>
          <span class="adv-only pgd-only">${num("alpha", "Step α (/255)")}</span><span class="adv-only pgd-only">${num("steps", "PGD steps")}</span>
          <span class="adv-only">${num("eps_warmup_epochs", "ε warm-up (epochs, 0 = off)")}</span>
        </div></fieldset>
        <fieldset><legend>Optimisation</legend><div class="fields">
          ${num("epochs", "Epochs")}${num("batch_size", "Batch size")}${num("lr", "Learning rate")}
          <label>Schedule<select name="schedule">${["step", "cosine", "none"].map((s) => html`<option ${s === values.schedule ? "selected" : ""}>${s}</option>`)}</select>${err("schedule")}</label>
          ${num("image_size", "Image size (px, blank = as stored)")}
          <label class="inline"><input type="checkbox" name="augment" ${values.augment === false ? "" : "checked"}> Augment: random crop</label>
          <label class="inline"><input type="checkbox" name="hflip" ${values.hflip === false ? "" : "checked"}> …and horizontal flip (off for digits, text)</label>
        </div></fieldset>
        <fieldset><legend>Compute (on the worker's GPUs when it has them)</legend><div class="fields">
          <label>Precision<select name="precision">${state.choices.precision.map((k) => html`<option value="${k}" ${k === (values.precision || "fp32") ? "selected" : ""}>${PRECISION_NAMES[k] || k}</option>`)}</select>${err("precision")}</label>
          <label>Training images<select name="data_loader">${state.choices.data_loader.map((k) => html`<option value="${k}" ${k === (values.data_loader || "auto") ? "selected" : ""}>${LOADER_NAMES[k] || k}</option>`)}</select>${err("data_loader")}</label>
          <label class="inline"><input type="checkbox" name="compile" ${values.compile ? "checked" : ""}> torch.compile the model (falls back to eager, with the reason in the log)</label>
          <label>GPUs<input type="number" name="gpus" value="${v("gpus") || 1}" min="${Math.min(...state.choices.gpus)}" max="${Math.max(...state.choices.gpus)}" step="1">${err("gpus")}</label>
          <label class="inline multi-gpu"><input type="checkbox" name="sync_batchnorm" ${values.sync_batchnorm ? "checked" : ""}> SyncBatchNorm: BatchNorm statistics over the whole batch, not each GPU's share</label>
          <p class="muted">More than one GPU: one process per GPU (DistributedDataParallel) on one worker host, each with its share of every batch; the batch size stays the global one.</p>
          <p class="muted">The final evaluation (PGD, AutoAttack) always runs in fp32.</p>
        </div></fieldset>
        <fieldset class="only sip_at fast_sip_at"><legend>SIP-AT masks</legend><div class="fields">
          <label>Mask source<select name="mask_source">${[["human", "human (mask set)"], ["gradcam", "automatic: Grad-CAM"], ["input_gradient", "automatic: input gradient"]].map(([k, n]) => html`<option value="${k}" ${k === values.mask_source ? "selected" : ""}>${n}</option>`)}</select>${err("mask_source")}</label>
          <label class="src-human">Mask set<select name="mask_set_id"><option value="">—</option></select>${err("mask_set_id")}</label>
          <label class="src-auto">Model for automatic maps (finished run)<select name="auto_mask_run_id"><option value="">—</option></select>${err("auto_mask_run_id")}</label>
          ${num("mask_fraction", "Share of images with a map (0–1)")}${num("mask_threshold", "Binarise threshold")}
        </div></fieldset>
        <fieldset class="only fast_sip_at"><legend>Fast SIP-AT</legend><div class="fields">
          <label>Single step<select name="fast_attack">${[["n_fgsm", "N-FGSM (default)"], ["fgsm_rs", "FGSM-RS (Wong et al.)"]].map(([k, n]) => html`<option value="${k}" ${k === values.fast_attack ? "selected" : ""}>${n}</option>`)}</select>${err("fast_attack")}</label>
        </div></fieldset>
        <fieldset class="only part"><legend>PART</legend><div class="fields">
          ${num("part_warmup_epochs", "Warm-up epochs (PGD-AT)")}${num("part_eps_low", "Low budget ε (/255)")}
        </div></fieldset>
        <fieldset class="only igd"><legend>IGD</legend><div class="fields">
          <label>Teacher (finished standard run)<select name="igd_teacher_run_id"><option value="">—</option></select>${err("igd_teacher_run_id")}</label>
          ${num("igd_lambda", "λ (distillation weight)")}
        </div></fieldset>
        <fieldset><legend>Evaluation (AutoAttack at the training ε, PGD over an ε grid)</legend><div class="fields">
          ${num("autoattack_n", "AutoAttack images (empty: 1000 on a GPU, 200 on a CPU; 0 = skip)")}
          <label>PGD at ε (/255)<input type="text" name="eval_eps" value="${(values.eval_eps || []).map((e) => round(e * 255, 3)).join(", ")}">${err("eval_eps")}</label>
          ${num("eval_subset", "PGD test images")}${num("eval_steps", "PGD steps")}${num("eval_restarts", "PGD restarts")}
          ${num("epoch_eval_steps", "Per-epoch PGD steps (cheap check)")}
        </div></fieldset>
        <p class="form-error launch-error" role="alert"></p>
        <div class="row end"><button type="button" class="cancel-form">Close</button>
          <button type="submit" class="primary launch-btn">Launch</button></div>
      </form>`);
    const form = $(".launch-form");
    const methodSel = form.elements.method;
    const sync = () => {
      for (const fs of form.querySelectorAll("fieldset.only")) fs.hidden = !fs.classList.contains(methodSel.value);
      // a standard run trains without an attack: its ε is only where it is evaluated
      const standard = methodSel.value === "standard";
      for (const el of form.querySelectorAll(".adv-only")) el.hidden = standard;
      for (const el of form.querySelectorAll(".pgd-only")) el.hidden = standard || methodSel.value === "fast_sip_at";
      form.querySelector(".eps-label").textContent = standard ? "Evaluation ε (/255; AutoAttack, per-epoch check)" : "Training ε (/255)";
      const human = form.elements.mask_source.value === "human";
      form.querySelector(".src-human").hidden = !human;
      form.querySelector(".src-auto").hidden = human;
      form.querySelector(".multi-gpu").hidden = !(Number(form.elements.gpus.value) > 1);
    };
    async function fillChoices() {
      const dsId = form.elements.dataset_id.value;
      const sets = await api(`/api/datasets/${dsId}/mask-sets`).catch(() => ({ data: [] }));
      const done = await api(`/api/runs?state=succeeded&dataset_id=${dsId}`).catch(() => ({ data: [] }));
      const opt = (val, label, chosen) => html`<option value="${val}" ${String(val) === String(chosen) ? "selected" : ""}>${label}</option>`;
      render(form.elements.mask_set_id, html`<option value="">—</option>${sets.data.map((s) => opt(s.id, `${s.name} (${s.num_images} images, ${s.hash.slice(0, 8)})`, values.mask_set_id))}`);
      render(form.elements.auto_mask_run_id, html`<option value="">—</option>${done.data.map((r) => opt(r.id, `#${r.id} ${r.name}`, values.auto_mask_run_id))}`);
      render(form.elements.igd_teacher_run_id, html`<option value="">—</option>${done.data.filter((r) => r.method === "standard").map((r) => opt(r.id, `#${r.id} ${r.name}`, values.igd_teacher_run_id))}`);
    }
    form.addEventListener("change", (e) => {
      if (e.target.name === "dataset_id") fillChoices();
      sync();
    });
    form.addEventListener("input", (e) => { if (e.target.name === "gpus") sync(); });
    sync();
    fillChoices();
    form.querySelector(".cancel-form").addEventListener("click", () => { render($(".launch"), html``); });
    form.addEventListener("submit", async (e) => {
      e.preventDefault();
      for (const el of form.querySelectorAll(".field-error")) el.textContent = "";
      for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
      form.querySelector(".launch-error").textContent = "";
      const body = readForm(form);
      if (body === null) return;
      const btn = form.querySelector(".launch-btn");
      btn.disabled = true;
      try {
        const url = clonedFrom ? `/api/runs?cloned_from=${clonedFrom}` : "/api/runs";
        const res = await api(url, { method: "POST", body });
        render($(".launch"), html``);
        if (res.data.length === 1) ctx.navigate(`#/runs/${res.data[0].id}`);
        else ctx.navigate(`#/compare?ids=${res.data.map((r) => r.id).join(",")}`);
      } catch (ex) {
        showErrors(form, ex);
      } finally {
        btn.disabled = false;
      }
    });
    form.scrollIntoView({ block: "start" });
  }

  const cloneId = ctx.query.get("clone");
  watch();
  await ready;
  if (cloneId) openForm(cloneId);
  return () => { alive = false; stopPolling(); clearTimeout(tagTimer); };
}

/** The form as the API's RunCreate body; marks local parse errors and returns null on one. */
function readForm(form) {
  const el = form.elements;
  const body = { name: el.name.value.trim(), dataset_id: Number(el.dataset_id.value), method: el.method.value,
    model: el.model.value, schedule: el.schedule.value };
  const method = el.method.value;
  body.augment = el.augment.checked;
  body.hflip = el.augment.checked && el.hflip.checked;
  body.precision = el.precision.value;
  body.data_loader = el.data_loader.value;
  body.compile = el.compile.checked;
  const numbers = ["eps", "alpha", "steps", "eps_warmup_epochs", "epochs", "batch_size", "lr", "image_size",
    "eval_subset", "eval_steps", "eval_restarts", "epoch_eval_steps", "autoattack_n", "gpus"];
  if (method === "sip_at" || method === "fast_sip_at") numbers.push("mask_fraction", "mask_threshold");
  if (method === "part") numbers.push("part_warmup_epochs", "part_eps_low");
  if (method === "igd") numbers.push("igd_lambda");
  const local = [];
  for (const name of numbers) {
    const raw = el[name].value.trim();
    if (raw === "") continue;
    const n = Number(raw);
    if (!Number.isFinite(n)) { local.push({ field: name, message: "must be a number" }); continue; }
    body[name] = BUDGETS.has(name) ? n / 255 : n;
  }
  const seeds = el.seeds.value.split(/[\s,]+/).filter(Boolean).map(Number);
  if (seeds.some((s) => !Number.isInteger(s))) local.push({ field: "seeds", message: "seeds are whole numbers" });
  else if (seeds.length === 1) body.seed = seeds[0];
  else if (seeds.length > 1) body.seeds = seeds;
  body.tags = el.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
  const evalEps = el.eval_eps.value.split(/[\s,]+/).filter(Boolean).map(Number);
  if (evalEps.some((x) => !Number.isFinite(x))) local.push({ field: "eval_eps", message: "a list of numbers (/255)" });
  else if (evalEps.length) body.eval_eps = evalEps.map((x) => x / 255);
  if (method === "sip_at" || method === "fast_sip_at") {
    body.mask_source = el.mask_source.value;
    if (body.mask_source === "human" && el.mask_set_id.value) body.mask_set_id = Number(el.mask_set_id.value);
    if (body.mask_source !== "human" && el.auto_mask_run_id.value) body.auto_mask_run_id = Number(el.auto_mask_run_id.value);
  }
  body.sync_batchnorm = (body.gpus || 1) > 1 && el.sync_batchnorm.checked;
  if (method === "fast_sip_at") body.fast_attack = el.fast_attack.value;
  if (method === "igd" && el.igd_teacher_run_id.value) body.igd_teacher_run_id = Number(el.igd_teacher_run_id.value);
  if (local.length) {
    showErrors(form, new ApiError(422, "Check the marked fields.", { errors: local }));
    return null;
  }
  return body;
}

function showErrors(form, ex) {
  const errors = (ex.body && Array.isArray(ex.body.errors)) ? ex.body.errors : [];
  let shownAll = errors.length > 0;
  for (const { field, message } of errors) {
    const slot = [...form.querySelectorAll(".field-error")].find((s) => s.dataset.for.split(" ").includes(field));
    if (!slot) { shownAll = false; continue; }
    slot.textContent = message;
    const input = slot.parentElement.querySelector("input, select");
    if (input) input.classList.add("invalid");
  }
  form.querySelector(".launch-error").textContent = shownAll ? "The run was not launched: fix the marked fields." : ex.message;
  const first = form.querySelector(".invalid");
  if (first) first.focus();
}
