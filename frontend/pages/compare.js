// Compare runs (#/compare?ids=1,2,3): their configs side by side (only the differences, the
// shared settings folded away), final results (AutoAttack at the training epsilon as the
// headline, PGD beside it, a warning on runs that failed a gradient-masking check), epoch curves
// overlaid, PGD accuracy against epsilon, and the runs grouped by one setting with mean +- std
// and the 95 % interval across seeds; with a baseline group chosen, each group minus it paired by
// seed (t and bootstrap intervals, the verdict at the margin set, worded as the API gives it;
// GET /api/runs/groups?baseline=&margin=, every selected run, no cap).
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { MISSING, number, percent as pct, plural, points } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { configValue, loadRunSettings } from "../lib/run-settings.js";
import { autoattackCell, chanceBadge, emptyCell, emptyReason, finalOf, maskingBadge, pgdCell, stateBadge } from "../lib/run-display.js";
import { ensureChartStyles, epsLabel } from "../components/line-chart/line-chart.js";
import { epochCharts, robustVsEpsChart } from "../components/line-chart/run-charts.js";
import "../components/inequality-panel/inequality-panel.js";

// settings as people read them (budgets in /255); the API and the exports keep pixel units
const show = (v, key = "") => configValue(key, v);

/** The model's salience agreement with the human masks, or why there is none. */
/** The model's salience against the human masks; empty with its reason: the run's state, no
 * mask set chosen for the run (PGD-AT, standard), or not measured. */
function agreementCell(run) {
  if (!run.final_metrics) return emptyCell(emptyReason(run));
  const v = (finalOf(run).salience_agreement || {}).top_mass_in_mask;
  if (v !== null && v !== undefined) return pct(v);
  return emptyCell(run.mask_set_id ? "not measured" : "no mask set for this run");
}

/** Clean accuracy with the number of test images it is on, flagged when at chance. */
function cleanCell(run) {
  if (!run.final_metrics) return emptyCell(emptyReason(run));
  const f = finalOf(run);
  return html`${pct(f.clean_accuracy)}${f.n_test ? html` <span class="muted">n ${f.n_test}</span>` : ""} ${chanceBadge(run)}`;
}

function metricLabel(k) {
  if (k === "autoattack_accuracy") return "AutoAttack acc. (run ε)";
  const m = k.match(/^pgd_accuracy@(.+)$/);
  if (m) return `PGD acc. at ${epsLabel(m[1])}`;
  const hv = k.match(/^human_validated_robust_accuracy@(.+)$/);
  if (hv) return `human-validated robust acc. at ε ${hv[1]}/255`;
  const test = k.match(/^inequality:(occlusion_)?(.+)$/);
  if (test) return `inequality: error under ${test[1] ? `occlusion by ${test[2]} (mean over r)` : `${test[2].replaceAll("_", " ")} (mean over t)`}`;
  return k.replaceAll("_", " ");
}

export async function mount(root, ctx) {
  ensureChartStyles();
  const ids = (ctx.query.get("ids") || "").split(",").map((x) => x.trim()).filter(Boolean);
  render(root, html`<section class="page wide compare-page"><p><a href="#/runs">← All runs</a></p>
    <h1>Compare runs</h1><p class="form-error" role="alert"></p><div class="body"></div></section>`);
  const $ = (s) => root.querySelector(s);
  if (!ids.length) {
    $(".form-error").textContent = "Pick runs to compare in the runs table.";
    return undefined;
  }
  let data;
  let settings;
  try {
    [data, settings] = await Promise.all([api(`/api/runs/compare?ids=${encodeURIComponent(ids.join(","))}`), loadRunSettings()]);
  } catch (err) {
    $(".form-error").textContent = err.message;
    return undefined;
  }
  const runs = data.runs;
  const diffKeys = Object.keys(data.differences);
  const sweepable = settings.fields.filter((f) => f.sweep).map((f) => f.name);
  const groupKeys = ["method", "model", "eps", ...sweepable, "mask_set_id", "dataset_id", "group_key", ...diffKeys.filter((k) => k !== "seed")];
  const uniqueGroupKeys = [...new Set(groupKeys)];
  const label = (r) => `#${r.id} ${r.name}`;

  render($(".body"), html`
    <h2>Settings that differ</h2>
    ${diffKeys.length ? html`<table class="data diff"><thead><tr><th>setting</th>${runs.map((r) => html`<th><a href="#/runs/${r.id}">${label(r)}</a> ${stateBadge(r.state)}</th>`)}</tr></thead>
      <tbody>${diffKeys.map((k) => html`<tr data-key="${k}"><td>${k}</td>${data.differences[k].map((v) => html`<td class="differs">${show(v, k)}</td>`)}</tr>`)}</tbody></table>`
      : html`<p class="muted">These runs share every setting.</p>`}
    <details style="margin:8px 0 16px"><summary>${plural(Object.keys(data.same).length, "shared setting")}</summary>
      <table class="data kv">${Object.entries(data.same).map(([k, v]) => html`<tr><td>${k}</td><td><code>${show(v, k)}</code></td></tr>`)}</table></details>
    <h2>Final results</h2>
    <table class="data final-results"><thead><tr><th>run</th><th class="num">clean (all test images, n)</th><th class="num">AutoAttack (run ε, n)</th>
      <th class="num">PGD (run ε, steps × restarts, n)</th><th class="num">salience agreement</th></tr></thead>
      <tbody>${runs.map((r) => html`<tr data-run="${r.id}"><td>${label(r)} ${maskingBadge(r)}</td>
        <td class="num col-clean">${cleanCell(r)}</td><td class="num col-autoattack">${autoattackCell(r)}</td><td class="num col-pgd">${pgdCell(r)}</td>
        <td class="num col-agreement">${agreementCell(r)}</td></tr>`)}</tbody></table>
    <h2 style="margin-top:16px">Curves</h2>
    ${epochCharts(runs.map((r) => ({ name: `#${r.id}`, epochs: data.curves[String(r.id)] || [] })))}
    <div style="margin-top:14px">${robustVsEpsChart(runs.map((r) => ({ name: `#${r.id}`, pgd: data.robust_vs_eps[String(r.id)] })))}</div>
    <h2 style="margin-top:16px">Grouped across seeds (mean ± std, 95 % interval)</h2>
    <div class="row"><label class="inline">Group by <select class="group-by">${uniqueGroupKeys.map((k) => html`<option ${k === (diffKeys.find((d) => d !== "seed") || "method") ? "selected" : ""}>${k}</option>`)}</select></label>
      <label class="inline">Baseline group <select class="baseline-group"><option value="">none</option></select></label>
      <label class="inline">Equivalence margin (± points) <input type="number" class="group-margin" min="0" max="100" step="any" placeholder="none" style="width:110px"></label>
      <span class="form-error margin-error"></span></div>
    <div class="groups" style="margin-top:8px"></div>
    <div class="paired-groups" style="margin-top:8px"></div>`);

  // Each draw is numbered; an answer that arrives after a later draw began is dropped, so a
  // slow first answer (the default grouping) never overwrites the grouping chosen since.
  let drawn = 0;
  async function drawGroups() {
    const mine = ++drawn;
    const by = $(".group-by").value;
    const baseline = $(".baseline-group").value;
    const margin = $(".group-margin").value.trim();
    const marginOk = margin === "" || (Number(margin) > 0 && Number(margin) <= 100);
    $(".margin-error").textContent = marginOk ? "" : "a margin in points, above 0 and at most 100";
    try {
      const ask = (base) => api(`/api/runs/groups?${new URLSearchParams({
        by, ids: ids.join(","), ...(base ? { baseline: base } : {}), ...(base && margin && marginOk ? { margin } : {}) })}`);
      const g = await ask(baseline);
      if (mine !== drawn) return;
      fillBaselines(g.groups, baseline, by);
      const metricKeys = [...new Set(g.groups.flatMap((x) => Object.keys(x.metrics)))];
      if (!g.groups.length) { render($(".groups"), html`<p class="muted">No finished runs to group yet.</p>`); render($(".paired-groups"), html``); return; }
      render($(".groups"), html`<table class="data groups-table"><thead><tr><th>${by}</th><th>runs (seeds)</th>
        ${metricKeys.map((k) => html`<th class="num">${metricLabel(k)}</th>`)}</tr></thead>
        <tbody>${g.groups.map((x) => html`<tr><td>${show(x.value, by)}</td><td>${x.run_ids.map((r, i) => html`<a href="#/runs/${r}">#${r}</a> (${x.seeds[i]}) `)}</td>
          ${metricKeys.map((k) => { const s = x.metrics[k]; return html`<td class="num">${s ? html`${spread(k, s)}
            <br><span class="muted group-interval">95 %: ${s.low === null ? MISSING : `${fmt(k, s.low)} to ${fmt(k, s.high)}`}</span>` : html`<span class="muted">not measured</span>`}</td>`; })}</tr>`)}</tbody></table>`);
      render($(".paired-groups"), baseline ? pairedTable(g.groups, by, baseline) : html``);
    } catch (err) {
      if (mine !== drawn) return;
      render($(".groups"), html`<p class="form-error">${err.message}</p>`);
    }
  }

  /** The groups as baseline choices (their values as the API's baseline parameter). */
  function fillBaselines(groups, chosen, by) {
    const select = $(".baseline-group");
    render(select, html`<option value="">none</option>${groups.map((x) => html`<option value="${pyText(x.value)}" ${pyText(x.value) === chosen ? "selected" : ""}>${show(x.value, by)}</option>`)}`);
  }

  /** Each group minus the baseline group, paired by seed: one row per group and figure. */
  function pairedTable(groups, key, baseline) {
    const rows = groups.flatMap((x) => Object.entries(x.paired).map(([k, p]) => ({ x, k, p })));
    const base = groups.find((x) => pyText(x.value) === baseline);
    if (!rows.length) return html`<p class="muted">No run shares a seed with the baseline group ${base ? show(base.value, key) : baseline}: nothing to pair.</p>`;
    const diff = (k, v) => (k.includes("loss") ? number(v, 3) : points(v));
    const span = (k, low, high) => (low === null || high === null ? MISSING : `${diff(k, low)} to ${diff(k, high)}`);
    return html`<h3>Each group minus the baseline (${key} ${base ? show(base.value, key) : baseline}), paired by seed</h3>
      <table class="data paired-table"><thead><tr><th>${key}</th><th>figure</th><th class="num">difference</th><th class="num">95 % t interval</th>
        <th class="num">95 % bootstrap</th><th class="num">pairs (seeds)</th><th>verdict</th></tr></thead>
      <tbody>${rows.map(({ x, k, p }) => html`<tr data-group="${pyText(x.value)}" data-metric="${k}"><td>${show(x.value, key)}</td><td>${metricLabel(k)}</td>
        <td class="num diff">${diff(k, p.mean)}</td><td class="num diff-t">${span(k, p.low, p.high)}</td><td class="num diff-boot">${span(k, p.boot_low, p.boot_high)}</td>
        <td class="num">${p.n} <span class="muted">(${p.seeds.join(", ")})</span></td><td class="verdict">${p.text}</td></tr>`)}</tbody></table>`;
  }

  $(".group-by").addEventListener("change", () => { $(".baseline-group").value = ""; drawGroups(); });
  $(".baseline-group").addEventListener("change", drawGroups);
  $(".group-margin").addEventListener("change", drawGroups);
  await drawGroups();
  const panel = document.createElement("inequality-panel");
  panel.runs = runs;
  $(".body").appendChild(panel);
  return undefined;
}

/** A group's value as Python writes it (str()), which is how GET /api/runs/groups matches ?baseline=. */
function pyText(v) {
  if (v === null || v === undefined) return "None";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (Array.isArray(v)) return `[${v.map((x) => (typeof x === "string" ? `'${x}'` : pyText(x))).join(", ")}]`;
  if (typeof v === "number" && v !== 0 && Math.abs(v) < 1e-4) {
    return v.toExponential().replace(/e([+-])(\d)$/, (_, sign, digit) => `e${sign}0${digit}`);
  }
  return String(v);
}

function fmt(key, v) {
  return key.includes("loss") ? number(v, 3) : pct(v);
}

/** A group's mean with its spread: "mean ± std n=3", but no ± for one run (a standard
 * deviation of one value is not 0, it is unknown). */
function spread(key, s) {
  if (s.n === 1) return html`${fmt(key, s.mean)} <span class="muted">n=1, one run: no spread</span>`;
  return html`${fmt(key, s.mean)} ± ${fmt(key, s.std)} <span class="muted">n=${s.n}</span>`;
}
