// Compare runs (#/compare?ids=1,2,3): their configs side by side (only the differences, the
// shared settings folded away), final results (AutoAttack at the training epsilon as the
// headline, PGD beside it, a warning on runs that failed a gradient-masking check), epoch curves
// overlaid, PGD accuracy against epsilon, and the runs grouped by one setting with mean +- std
// across seeds.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { number, percent as pct } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { configValue, loadRunSettings } from "../lib/run-settings.js";
import { autoattackCell, finalOf, maskingBadge, pgdCell, stateBadge } from "../lib/run-display.js";
import { ensureChartStyles, epsLabel } from "../components/line-chart/line-chart.js";
import { epochCharts, robustVsEpsChart } from "../components/line-chart/run-charts.js";
import "../components/inequality-panel/inequality-panel.js";

// settings as people read them (budgets in /255); the API and the exports keep pixel units
const show = (v, key = "") => configValue(key, v);

/** The model's salience agreement with the human masks, or why there is none. */
function agreementCell(f) {
  const v = (f.salience_agreement || {}).top_mass_in_mask;
  return v === null || v === undefined ? html`<span class="muted">no human masks</span>` : pct(v);
}

function metricLabel(k) {
  if (k === "autoattack_accuracy") return "AutoAttack acc. (run ε)";
  const m = k.match(/^pgd_accuracy@(.+)$/);
  if (m) return `PGD acc. at ${epsLabel(m[1])}`;
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
    <details style="margin:8px 0 16px"><summary>${Object.keys(data.same).length} shared settings</summary>
      <table class="data kv">${Object.entries(data.same).map(([k, v]) => html`<tr><td>${k}</td><td><code>${show(v, k)}</code></td></tr>`)}</table></details>
    <h2>Final results</h2>
    <table class="data final-results"><thead><tr><th>run</th><th class="num">clean</th><th class="num">AutoAttack (run ε, n)</th>
      <th class="num">PGD (run ε, steps × restarts, n)</th><th class="num">salience agreement</th></tr></thead>
      <tbody>${runs.map((r) => { const f = finalOf(r); return html`<tr data-run="${r.id}"><td>${label(r)} ${maskingBadge(r)}</td>
        <td class="num">${pct(f.clean_accuracy)}</td><td class="num col-autoattack">${autoattackCell(r)}</td><td class="num col-pgd">${pgdCell(r)}</td>
        <td class="num">${agreementCell(f)}</td></tr>`; })}</tbody></table>
    <h2 style="margin-top:16px">Curves</h2>
    ${epochCharts(runs.map((r) => ({ name: `#${r.id}`, epochs: data.curves[String(r.id)] || [] })))}
    <div style="margin-top:14px">${robustVsEpsChart(runs.map((r) => ({ name: `#${r.id}`, pgd: data.robust_vs_eps[String(r.id)] })))}</div>
    <h2 style="margin-top:16px">Grouped (mean ± std across seeds)</h2>
    <label class="inline">Group by <select class="group-by">${uniqueGroupKeys.map((k) => html`<option ${k === (diffKeys.find((d) => d !== "seed") || "method") ? "selected" : ""}>${k}</option>`)}</select></label>
    <div class="groups" style="margin-top:8px"></div>`);

  async function drawGroups() {
    const by = $(".group-by").value;
    try {
      const g = await api(`/api/runs/groups?by=${encodeURIComponent(by)}&ids=${encodeURIComponent(ids.join(","))}`);
      const metricKeys = [...new Set(g.groups.flatMap((x) => Object.keys(x.metrics)))];
      if (!g.groups.length) { render($(".groups"), html`<p class="muted">No finished runs to group yet.</p>`); return; }
      render($(".groups"), html`<table class="data groups-table"><thead><tr><th>${by}</th><th>runs (seeds)</th>
        ${metricKeys.map((k) => html`<th class="num">${metricLabel(k)}</th>`)}</tr></thead>
        <tbody>${g.groups.map((x) => html`<tr><td>${show(x.value, by)}</td><td>${x.run_ids.map((r, i) => html`<a href="#/runs/${r}">#${r}</a> (${x.seeds[i]}) `)}</td>
          ${metricKeys.map((k) => { const s = x.metrics[k]; return html`<td class="num">${s ? html`${fmt(k, s.mean)} ± ${fmt(k, s.std)} <span class="muted">n=${s.n}</span>` : html`<span class="muted">not measured</span>`}</td>`; })}</tr>`)}</tbody></table>`);
    } catch (err) {
      render($(".groups"), html`<p class="form-error">${err.message}</p>`);
    }
  }
  $(".group-by").addEventListener("change", drawGroups);
  await drawGroups();
  const panel = document.createElement("inequality-panel");
  panel.runs = runs;
  $(".body").appendChild(panel);
  return undefined;
}

function fmt(key, v) {
  return key.includes("loss") ? number(v, 3) : pct(v);
}
