// One training run (#/runs/<id>): live curves (polled every 2 s while it is queued or running),
// progress with time left, log tail, config, reproducibility record, downloads, cancel / retry /
// clone, the final evaluation (AutoAttack as the headline robust accuracy with its per-attack
// breakdown, PGD beside it and over epsilon, the gradient-masking checks, with a warning at the
// top when one failed), and its salience beside the human masks.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { duration, percent as pct, wholePercent } from "../lib/format.js";
import { html, raw, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { ensureChartStyles, epsLabel, lineChart } from "../components/line-chart/line-chart.js";
import { autoattackOf, checkName, failedChecks, finalOf, pgdGrid, pgdLabel, stateBadge } from "./runs.js";

const POLL_MS = 2000;
// AutoAttack's attacks as its paper names them (the report keys them in lower case)
const AA_ATTACK_NAMES = { "apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", square: "Square" };

function kvTable(obj) {
  const rows = Object.entries(obj || {}).map(([k, v]) => html`<tr><td>${k}</td><td><code>${
    v !== null && typeof v === "object" ? JSON.stringify(v) : String(v)}</code></td></tr>`);
  return html`<table class="data kv">${rows}</table>`;
}

/** What the per-epoch robust curve is: the cheap check, not the final evaluation. */
function epochCheckLabel(epochs) {
  const steps = [...new Set(epochs.map((e) => e.robust_steps).filter(Number.isFinite))];
  return `PGD${steps.length === 1 ? `-${steps[0]}` : ""}, 1 restart, per epoch`;
}

export function epochCharts(series) {
  // series: [{name, epochs: [metrics...]}]; one chart for loss, one for accuracies
  const one = series.length === 1;
  const check = epochCheckLabel(series.flatMap((s) => s.epochs));
  const loss = series.map((s) => ({ name: one ? "train loss" : s.name, points: s.epochs.map((e) => [e.epoch, e.train_loss]) }));
  const acc = series.flatMap((s, i) => [
    { name: one ? "clean" : `${s.name} clean`, points: s.epochs.map((e) => [e.epoch, e.clean_accuracy]), colorIndex: i },
    { name: one ? `robust (${check})` : `${s.name} robust`, points: s.epochs.map((e) => [e.epoch, e.robust_accuracy]), dashed: true, colorIndex: i },
  ]);
  if (!one) {
    const palette = ["#2f6fde", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#e67700", "#0b7285", "#5c940d"];
    for (const s of acc) s.color = palette[s.colorIndex % palette.length];
  }
  return html`<div class="charts">
    <div class="chart chart-loss">${lineChartSafe({ title: "Training loss", xLabel: "epoch", series: loss })}</div>
    <div class="chart chart-acc">${lineChartSafe({ title: one ? "Accuracy per epoch (robust: a cheap check at train ε)" : `Accuracy (robust: ${check}, train ε)`, xLabel: "epoch", yMin: 0, yMax: 1, series: acc })}</div>
  </div>`;
}

/** lineChart output is markup we built (labels escaped inside); wrap it as trusted html. */
export function lineChartSafe(opts) {
  return raw(lineChart(opts));
}

export function robustVsEpsChart(series) {
  // series: [{name, pgd: {eps: acc}}]
  const s = series.map((x) => ({ name: x.name, points: Object.entries(x.pgd || {}).map(([e, a]) => [Number(e), a]) }));
  return lineChartSafe({ title: "Robust accuracy against ε (PGD)", xLabel: "ε", yMin: 0, yMax: 1, series: s, xFormat: epsLabel });
}

/** AutoAttack as the headline robust accuracy, with the accuracy after each of its attacks. */
function autoattackSection(run) {
  const aa = autoattackOf(run);
  if (!aa) {
    return html`<p class="final-autoattack-none">AutoAttack: <span class="muted">not run (${
      run.config.autoattack_n === 0 ? "AutoAttack images set to 0" : "the run finished before AutoAttack was part of every run"}).</span></p>`;
  }
  const attacks = aa.attacks || Object.keys(AA_ATTACK_NAMES);
  const after = aa.after || {};
  return html`
    <p class="robust-headline">AutoAttack (${aa.version}, L∞, ε ${epsLabel(aa.eps)}, ${aa.n} images, ${aa.package}):
      <strong class="final-autoattack">${pct(aa.accuracy)}</strong></p>
    <table class="data aa-breakdown"><thead><tr><th class="num">clean</th>
      ${attacks.map((a) => html`<th class="num">after ${AA_ATTACK_NAMES[a] || a}</th>`)}</tr></thead>
      <tbody><tr><td class="num">${pct(aa.clean)}</td>${attacks.map((a) => html`<td class="num" data-attack="${a}">${pct(after[a])}</td>`)}</tr></tbody></table>
    <p class="muted">Each attack runs on the images still robust after the ones before it. APGD-CE, APGD-T and
      FAB-T: ${aa.iterations} iterations; APGD-T and FAB-T: ${aa.target_classes} target classes; Square:
      ${aa.square_queries} queries; seed ${aa.seed}${Number.isFinite(aa.seconds) ? `; ${duration(aa.seconds)}` : ""}.</p>
    ${aa.pgd ? html`<p>PGD on the same images: <strong class="final-aa-pgd">${pct(aa.pgd.accuracy)}</strong>
      (${pgdLabel(aa.pgd)}, ε ${epsLabel(aa.pgd.eps)}).</p>` : ""}
    ${(aa.notes || []).map((n) => html`<p class="muted aa-note">${n}.</p>`)}
    ${(aa.warnings || []).length ? html`<div class="aa-warnings form-error"><p>AutoAttack warned:</p>
      <ul>${aa.warnings.map((w) => html`<li>${w}</li>`)}</ul></div>` : ""}`;
}

/** PGD over the ε grid, and at a very large budget. */
function pgdSection(run, f) {
  const grid = pgdGrid(f);
  const large = f.large_eps;
  return html`
    <p class="pgd-label">${pgdLabel(grid)}, spread over the classes${
      f.subset_clean_accuracy !== undefined && f.robust_subset !== f.n_test
        ? html` (clean accuracy on those: <span class="subset-clean">${pct(f.subset_clean_accuracy)}</span>)` : ""}:</p>
    <table class="data pgd-grid"><tr><th>ε</th>${Object.keys(f.pgd_accuracy || {}).map((e) => html`<th class="num">${epsLabel(e)}</th>`)}</tr>
      <tr><td>PGD acc.</td>${Object.values(f.pgd_accuracy || {}).map((a) => html`<td class="num">${pct(a)}</td>`)}</tr></table>
    ${robustVsEpsChart([{ name: run.name, pgd: f.pgd_accuracy }])}
    ${large ? html`<p class="large-eps">At a very large budget, ε ${epsLabel(large.eps)} (${large.eps} in pixel units):
      PGD <strong>${pct(large.accuracy)}</strong> on ${large.n} images (a model that is not masking its gradients is near 0 % there).</p>` : ""}`;
}

/** Every gradient-masking check with pass / fail and what it measured. */
function maskingSection(f) {
  const gm = f.gradient_masking;
  if (!gm) return html`<p class="masking-checks-none muted">Gradient-masking checks: not run (the run finished before they were part of every run).</p>`;
  return html`
    <p class="muted">Whether a robust accuracy can be trusted (Carlini et al. 2019; Athalye et al. 2018): a failed
      check means the attacks may be stopped by masked gradients, not by robustness.</p>
    <table class="data masking-checks"><tbody>${(gm.checks || []).map((c) => html`<tr data-check="${c.name}" class="${c.passed ? "passed" : "failed"}">
      <td class="${c.passed ? "form-ok" : "form-error"}">${c.passed ? "✓ pass" : "✗ fail"}</td><td>${checkName(c.name)}</td><td class="muted">${c.detail}</td></tr>`)}</tbody></table>`;
}

export async function mount(root, ctx) {
  ensureChartStyles();
  const id = Number(ctx.params[0]);
  let stopPolling = () => {};
  let alive = true;
  let salienceShown = false;

  render(root, html`<section class="page wide run-page">
    <p><a href="#/runs">← All runs</a></p>
    <div class="run-head"></div>
    <p class="form-error action-error" role="alert"></p>
    <div class="run-curves"></div>
    <div class="grid-2" style="display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;margin-top:16px">
      <div><h2>Final evaluation</h2><div class="run-final muted">Not finished yet.</div></div>
      <div><h2>Log</h2><pre class="log-tail">…</pre></div>
      <div><h2>Configuration</h2><div class="run-config"></div></div>
      <div><h2>Reproducibility</h2><div class="run-repro"></div><h2 style="margin-top:12px">Downloads</h2><div class="run-downloads"></div></div>
    </div>
    <div class="run-salience" style="margin-top:16px"></div>
  </section>`);
  const $ = (s) => root.querySelector(s);

  async function act(path) {
    $(".action-error").textContent = "";
    try {
      await api(`/api/runs/${id}/${path}`, { method: "POST" });
    } catch (err) {
      $(".action-error").textContent = err.message;
    }
    watch();
  }
  $(".run-head").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]");
    if (!b) return;
    if (b.dataset.act === "clone") ctx.navigate(`#/runs?clone=${id}`);
    else act(b.dataset.act);
  });

  /** Fetch and draw the run; true while it is queued or running (then it is polled again). */
  async function load() {
    const run = await api(`/api/runs/${id}`);
    if (!alive) return false;
    draw(run);
    if (run.state === "queued" || run.state === "running") return true;
    if (run.state === "succeeded" && !salienceShown) { salienceShown = true; drawSalience(); }
    return false;
  }

  /** Load now and keep polling while the run is active (again after cancel / retry). */
  function watch() {
    stopPolling();
    stopPolling = poll(load, POLL_MS, {
      onError: (err) => { if (alive) $(".action-error").textContent = `${err.message} (retrying)`; },
      onRecover: () => { if (alive) $(".action-error").textContent = ""; },
    });
  }

  function draw(run) {
    const active = run.state === "queued" || run.state === "running";
    const left = run.time_left_s !== null && run.time_left_s !== undefined ? `about ${duration(run.time_left_s)} left` : "";
    const masking = failedChecks(run);
    render($(".run-head"), html`
      <div class="row"><h1 class="run-name">${run.name || `Run ${run.id}`}</h1> ${stateBadge(run.state)}
        ${run.cancel_requested && run.state === "running" ? html`<span class="muted">stopping…</span>` : ""}
        <span class="spacer"></span>
        ${active ? html`<button type="button" class="danger" data-act="cancel" ${run.cancel_requested ? "disabled" : ""}>Cancel</button>` : ""}
        ${run.state === "failed" || run.state === "cancelled" ? html`<button type="button" data-act="retry">Retry</button>` : ""}
        <button type="button" data-act="clone">Clone</button>
        <a class="button" href="#/compare?ids=${run.id}">Compare…</a></div>
      <p class="muted">#${run.id} · ${run.dataset_name} · ${run.method} · ${run.config.model} · ε ${epsLabel(run.config.eps)} · seed ${run.config.seed}
        ${run.tags.length ? html` · tags ${run.tags.join(", ")}` : ""}${run.cloned_from_id ? html` · cloned from <a href="#/runs/${run.cloned_from_id}">#${run.cloned_from_id}</a>` : ""}</p>
      <div class="row"><div class="progress" style="flex:1;max-width:480px" role="progressbar" aria-valuemin="0" aria-valuemax="100"
        aria-valuenow="${wholePercent(run.progress)}"><div style="width:${wholePercent(run.progress)}%"></div></div>
        <span class="progress-text">epoch ${run.current_epoch} / ${run.total_epochs}${left ? ` · ${left}` : ""}</span>
        ${run.attempts > 1 ? html`<span class="muted">attempt ${run.attempts}</span>` : ""}</div>
      ${run.error ? html`<p class="form-error run-error" role="alert">${run.error}</p>` : ""}
      ${masking.length ? html`<p class="form-error masking-warning" role="alert">⚠ Possible gradient masking: this run failed
        ${masking.length === 1 ? "the check" : "the checks"} ${masking.map((c) => `“${checkName(c.name)}”`).join(", ")}. Its robust accuracy may
        be overstated; see the gradient-masking checks under Final evaluation.</p>` : ""}`);
    render($(".run-curves"), epochCharts([{ name: run.name, epochs: run.epochs.map((e) => e.metrics) }]));
    const log = $(".log-tail");
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.textContent = run.log_tail || "(no output yet)";
    if (atBottom) log.scrollTop = log.scrollHeight;
    render($(".run-config"), kvTable(run.config));
    render($(".run-repro"), kvTable(run.reproducibility));
    const dl = Object.entries(run.downloads || {});
    render($(".run-downloads"), dl.length
      ? html`${dl.map(([name, url]) => html`<a class="button" href="${url}" download>${name}</a> `)}`
      : html`<span class="muted">Available when the run has finished.</span>`);
    const f = finalOf(run);
    if (run.final_metrics) {
      const agree = f.salience_agreement;
      render($(".run-final"), html`
        <p>Clean accuracy <strong class="final-clean">${pct(f.clean_accuracy)}</strong> on ${f.n_test} test images.</p>
        <h3>AutoAttack</h3><div class="final-aa">${autoattackSection(run)}</div>
        <h3>PGD</h3><div class="final-pgd">${pgdSection(run, f)}</div>
        <h3>Gradient-masking checks</h3><div class="final-masking">${maskingSection(f)}</div>
        ${agree ? html`<p>Salience agreement with the human masks (${agree.kind}, ${agree.n} images): top-mass in mask
          <strong>${pct(agree.top_mass_in_mask)}</strong>, IoU of top pixels ${pct(agree.iou_top_k)}.</p>` : ""}`);
      $(".run-final").classList.remove("muted");
    }
  }

  async function drawSalience() {
    let s;
    try { s = await api(`/api/runs/${id}/salience`); } catch { return; }
    if (!alive || !s.available) return;
    const a = s.agreement;
    render($(".run-salience"), html`<h2>Salience beside robustness</h2>
      <p class="muted">The model's own ${s.kind} maps next to the human consensus masks on test images${a ? html` —
        mean share of the top salience mass inside the mask: <strong>${pct(a.top_mass_in_mask)}</strong> over ${a.n} images` : " (this run's data has no human masks)"}.</p>
      <div class="salience-grid">${s.samples.map((x) => html`<figure>
        <div class="row"><img src="${x.image_url}" alt="image"><img src="${x.model_url}" alt="model salience">
          ${x.human_url ? html`<img src="${x.human_url}" alt="human mask">` : ""}</div>
        <figcaption class="muted">label ${x.label}, predicted ${x.predicted}${Number.isFinite(x.agreement) ? ` · agreement ${pct(x.agreement)}` : ""}</figcaption>
      </figure>`)}</div>`);
  }

  watch();
  return () => { alive = false; stopPolling(); };
}
