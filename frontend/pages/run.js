// One training run (#/runs/<id>): live curves (per-batch loss and accuracy pushed by the server as
// server-sent events while it is queued or running, GET /api/runs/<id>/events; polled every 2 s
// when the stream fails), with hover values, smoothing, log scale and zoom; progress to the end
// of the final evaluation with what the run is doing (training, or the evaluation's stage and
// images) and the time left (training from the measured batch rate, the evaluation estimated
// from its work, then measured); while queued, its place in the queue; the device, memory and images/s; log tail, the
// settings that apply to its method (budgets in /255), reproducibility record, downloads, cancel / retry /
// clone, the final evaluation (AutoAttack as the headline robust accuracy with its per-attack
// breakdown, PGD beside it and over epsilon, the gradient-masking checks, with a warning at the
// top when one failed), and its salience beside the human masks. Every figure on a subset of the
// test images names it; a model at chance is flagged; an absent figure says why (cancelled,
// not measured, no mask set for the run), as on the runs and compare pages (lib/run-display.js).
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { bytes, dateTime, duration, greyLevels, number, percent as pct, plural } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { RunFeed } from "../lib/run-feed.js";
import { applies, configEntries, labelOf, loadRunSettings, recordOwner, settingOf } from "../lib/run-settings.js";
import { drawHvra } from "../components/hvra-panel/hvra-panel.js";
import { drawModelAtThreshold } from "../components/model-threshold/model-threshold.js";
import {
  agreementReason, autoattackOf, chanceBadge, checkName, emptyReason, failedChecks, finalOf, pgdGrid, pgdLabel, phaseText, queueText, runPercent, stateBadge,
} from "../lib/run-display.js";
import { createChart, ensureChartStyles, epsLabel } from "../components/line-chart/line-chart.js";
import { epochCheckLabel, robustVsEpsChart } from "../components/line-chart/run-charts.js";

// AutoAttack's attacks as its paper names them (the report keys them in lower case)
const AA_ATTACK_NAMES = { "apgd-ce": "APGD-CE", "apgd-t": "APGD-T", "fab-t": "FAB-T", square: "Square" };

/** The settings that apply to the run's method, as people read them. */
function configTable(config) {
  return html`<table class="data kv run-config-table">${configEntries(config).map((r) => html`<tr data-key="${r.key}"><td>${r.label}</td><td><code>${r.value}</code></td></tr>`)}</table>`;
}

/** A record as a key / value table; a nested record is a table of its own and a list reads
 * joined, never as raw JSON; an unset value reads "not recorded". */
function kvTable(obj) {
  const cell = (v) => {
    if (v === null || v === undefined || v === "") return html`<span class="muted">not recorded</span>`;
    if (Array.isArray(v)) return v.every((x) => x === null || typeof x !== "object")
      ? html`<code>${v.join(", ")}</code>` : html`${v.map((x) => kvTable(x))}`;
    if (typeof v === "object") return kvTable(v);
    return html`<code>${String(v)}</code>`;
  };
  const rows = Object.entries(obj || {}).map(([k, v]) => html`<tr><td>${k}</td><td>${cell(v)}</td></tr>`);
  return html`<table class="data kv">${rows}</table>`;
}

/** The reproducibility record with only the fields that apply to the run's method (a PGD-AT
 * run lists no mask set, mask share or teacher), settings by their labels. */
function recordEntries(run) {
  const config = run.config || {};
  const value = (name) => config[name];
  const kept = {};
  for (const [key, v] of Object.entries(run.reproducibility || {})) {
    const item = settingOf(recordOwner(key) || key);
    if (item && !applies(item, value)) continue;
    const label = item && !recordOwner(key) ? labelOf(item, run.method) : key.replaceAll("_", " ");
    kept[label] = v;
  }
  return kept;
}

/** AutoAttack as the headline robust accuracy, with the accuracy after each of its attacks. */
function autoattackSection(run) {
  const aa = autoattackOf(run);
  const nTest = finalOf(run).n_test;
  if (!aa) {
    return html`<p class="final-autoattack-none">AutoAttack: <span class="muted">not run (${
      run.config.autoattack_n === 0 ? "AutoAttack images set to 0" : "the run finished before AutoAttack was part of every run"}).</span></p>`;
  }
  const attacks = aa.attacks || Object.keys(AA_ATTACK_NAMES);
  const after = aa.after || {};
  return html`
    <p class="robust-headline">AutoAttack (${aa.version}, L∞, ε ${epsLabel(aa.eps)}, ${aa.n} images, ${aa.package}):
      <strong class="final-autoattack">${pct(aa.accuracy)}</strong></p>
    ${nTest && aa.n !== nTest ? html`<p class="muted aa-subset">AutoAttack runs on ${aa.n} of the ${nTest} test images: its
      clean accuracy below is on those ${aa.n}, not the ${nTest} above.</p>` : ""}
    <table class="data aa-breakdown"><thead><tr><th class="num">clean (${aa.n} images)</th>
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
  if (!f.pgd_accuracy || !Object.keys(f.pgd_accuracy).length) return html`<p class="muted empty-reason">PGD: not measured.</p>`;
  const grid = pgdGrid(f);
  const large = f.large_eps;
  return html`
    <p class="pgd-label">${pgdLabel(grid)}${f.n_test && grid.n && grid.n !== f.n_test ? ` of the ${f.n_test} test images` : ""}, spread over the classes${
      f.subset_clean_accuracy !== undefined && f.robust_subset !== f.n_test
        ? html` (clean accuracy on those: <span class="subset-clean">${pct(f.subset_clean_accuracy)}</span>)` : ""}:</p>
    <table class="data pgd-grid"><tr><th>ε</th>${Object.keys(f.pgd_accuracy || {}).map((e) => html`<th class="num">${epsLabel(e)}</th>`)}</tr>
      <tr><td>PGD acc.</td>${Object.values(f.pgd_accuracy || {}).map((a) => html`<td class="num">${pct(a)}</td>`)}</tr></table>
    ${robustVsEpsChart([{ name: run.name, pgd: f.pgd_accuracy }])}
    ${large ? html`<p class="large-eps">At a very large budget, ε ${epsLabel(large.eps)}:
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

/** The live curves' series: per-batch points (x in epochs: step / batches per epoch) with the
 * per-epoch figures over them. */
function liveSeries(run, batches, epochs) {
  const per = run.batches_per_epoch;
  const x = (b) => (per ? b.step / per : b.epoch);
  const check = epochCheckLabel(epochs);
  const standard = run.method === "standard";
  return {
    loss: [
      { name: "train loss (every few batches)", points: batches.map((b) => [x(b), b.loss]), dots: false, smooth: true, color: "#2f6fde" },
      { name: "train loss (epoch mean)", points: epochs.map((e) => [e.epoch, e.train_loss]), color: "#0b2f73" },
    ],
    acc: [
      { name: "train acc. (every few batches)", points: batches.map((b) => [x(b), b.accuracy]), dots: false, smooth: true, color: "#e67700" },
      { name: "clean", points: epochs.map((e) => [e.epoch, e.clean_accuracy]), color: "#2f6fde" },
      { name: `robust (${check}${standard ? ` at ${greyLevels(run.config.eps)}` : ""})`, points: epochs.map((e) => [e.epoch, e.robust_accuracy]), dashed: true, color: "#d9480f" },
    ],
  };
}

const PAGE = html`<section class="page wide run-page">
    <p><a href="#/runs">← All runs</a></p>
    <div class="run-head"></div>
    <p class="form-error action-error" role="alert"></p>
    <div class="run-system muted"></div>
    <div class="run-curves charts" data-live="">
      <div class="chart chart-loss"></div><div class="chart chart-acc"></div>
    </div>
    <div class="grid-2" style="display:grid;grid-template-columns:repeat(auto-fit,minmax(420px,1fr));gap:16px;margin-top:16px">
      <div><h2>Final evaluation</h2><div class="run-final muted">Not finished yet.</div></div>
      <div><h2>Log</h2><pre class="log-tail">…</pre></div>
      <div><h2>Configuration</h2><div class="run-config"></div></div>
      <div><h2>Reproducibility</h2><div class="run-repro"></div><h2 style="margin-top:12px">Downloads</h2><div class="run-downloads"></div></div>
    </div>
    <div class="run-salience" style="margin-top:16px"></div>
  </section>`;

/** The heading: name, state and actions; what the run is; progress (with the batch within the
 * epoch and the time left); its error, and a warning when it failed a gradient-masking check. */
function headMarkup(run, batches) {
  const isActive = run.state === "queued" || run.state === "running";
  const evaluating = run.state === "running" && (run.work || {}).phase === "evaluating";
  const known = run.time_left_s !== null && run.time_left_s !== undefined;
  const left = run.state !== "running" ? ""
    : known ? `about ${duration(run.time_left_s)} left${evaluating ? "" : " (the final evaluation included)"}`
      : evaluating ? "taking longer than estimated" : "";
  const phase = phaseText(run);
  const percent = runPercent(run);
  const masking = failedChecks(run);
  const per = run.batches_per_epoch;
  const last = batches.length ? batches[batches.length - 1] : null;
  const within = per && last && run.state === "running" && last.step > run.current_epoch * per
    ? ` (batch ${last.step - run.current_epoch * per} / ${per})` : "";
  const eps = run.method === "standard" ? `evaluated at ε ${greyLevels(run.config.eps)}` : `ε ${greyLevels(run.config.eps)}`;
  return html`
      <div class="row"><h1 class="run-name">${run.name || `Run ${run.id}`}</h1> ${stateBadge(run.state)}
        ${run.cancel_requested && run.state === "running" ? html`<span class="muted">stopping…</span>` : ""}
        <span class="spacer"></span>
        ${isActive ? html`<button type="button" class="danger" data-act="cancel" ${run.cancel_requested ? "disabled" : ""}>Cancel</button>` : ""}
        ${run.state === "failed" || run.state === "cancelled" ? html`<button type="button" data-act="retry">Retry</button>` : ""}
        <button type="button" data-act="clone">Clone</button>
        <a class="button" href="#/compare?ids=${run.id}">Compare…</a></div>
      <p class="muted">#${run.id} · ${run.dataset_name} · ${run.method} · ${run.config.model} · ${eps} · seed ${run.config.seed}
        ${run.tags.length ? html` · tags ${run.tags.join(", ")}` : ""}${run.cloned_from_id ? html` · cloned from <a href="#/runs/${run.cloned_from_id}">#${run.cloned_from_id}</a>` : ""}</p>
      <div class="row"><div class="progress run-progress" style="flex:1;max-width:480px" role="progressbar" aria-valuemin="0" aria-valuemax="100"
        aria-valuenow="${percent}" data-phase="${(run.work || {}).phase || ""}" title="training and the final evaluation, weighed by their work"><div style="width:${percent}%"></div></div>
        <span class="progress-text">epoch ${run.current_epoch} / ${run.total_epochs}${within}${phase ? ` · ${phase}` : ""}${left ? ` · ${left}` : ""}</span>
        ${run.attempts > 1 ? html`<span class="muted">attempt ${run.attempts}</span>` : ""}</div>
      ${run.state === "queued" && run.queue ? html`<p class="run-queue" data-position="${run.queue.position}" data-listening="${run.queue.listening}">${queueText(run.queue)}
        <a href="#/queue">The queue</a>${run.queue.listening ? "" : html` says how to start a worker`}.</p>` : ""}
      ${run.resent_at && run.state === "queued" ? html`<p class="muted run-resent">Sent to the workers again at ${dateTime(run.resent_at)}: ${run.resent_why}</p>` : ""}
      ${run.error ? html`<p class="form-error run-error" role="alert">${run.error}</p>` : ""}
      ${masking.length ? html`<p class="form-error masking-warning" role="alert">⚠ Possible gradient masking: this run failed
        ${masking.length === 1 ? "the check" : "the checks"} ${masking.map((c) => `“${checkName(c.name)}”`).join(", ")}. Its robust accuracy may
        be overstated; see the gradient-masking checks under Final evaluation.</p>` : ""}`;
}

/** Device, peak memory and images per second, as the worker last measured them. */
function systemMarkup(run, batches) {
  const sys = run.system || (run.reproducibility || {}).system;
  if (!sys) return html``;
  const latest = batches.length ? batches[batches.length - 1].images_per_s : null;
  const rate = run.state === "running" && Number.isFinite(latest) ? latest : sys.images_per_s;
  return html`<span class="sys-device">device <b>${sys.device || "–"}</b></span>
      <span class="sys-memory">peak memory <b>${bytes(sys.memory_bytes)}</b></span>
      <span class="sys-rate">training <b>${number(rate, 0)}</b> images/s</span>
      ${run.batches_per_epoch ? html`<span class="sys-batches">${plural(run.batches_per_epoch, "batch", "batches")} per epoch</span>` : ""}`;
}

/** The final evaluation of a finished run: clean, AutoAttack, PGD, the masking checks, salience. */
function finalMarkup(run) {
  const f = finalOf(run);
  const agree = f.salience_agreement;
  return html`
        <p>Clean accuracy <strong class="final-clean">${pct(f.clean_accuracy)}</strong>${f.n_test ? ` on ${f.n_test} test images` : ""}. ${chanceBadge(run)}</p>
        <h3>AutoAttack</h3><div class="final-aa">${autoattackSection(run)}</div>
        <div class="final-hvra"></div>
        <div class="final-threshold"></div>
        <h3>PGD</h3><div class="final-pgd">${pgdSection(run, f)}</div>
        <h3>Gradient-masking checks</h3><div class="final-masking">${maskingSection(f)}</div>
        ${agree ? html`<p>Salience agreement with the human masks (${agree.kind}, ${agree.n} images): top-mass in mask
          <strong>${pct(agree.top_mass_in_mask)}</strong>, IoU of top pixels ${pct(agree.iou_top_k)}.</p>`
    : html`<p class="final-agreement-none">Salience agreement with the human masks: <span class="muted empty-reason">${agreementReason(run)}</span>.</p>`}`;
}

/** The model's salience maps beside the human masks (GET /api/runs/<id>/salience). */
function salienceMarkup(s, run) {
  const a = s.agreement;
  return html`<h2>Salience beside robustness</h2>
      <p class="muted">The model's own ${s.kind} maps next to the human consensus masks on test images${a ? html` —
        mean share of the top salience mass inside the mask: <strong>${pct(a.top_mass_in_mask)}</strong> over ${a.n} images` : html` <span class="empty-reason">(agreement: ${agreementReason(run)})</span>`}.</p>
      <div class="salience-grid">${s.samples.map((x) => html`<figure>
        <div class="row"><img src="${x.image_url}" alt="image"><img src="${x.model_url}" alt="model salience">
          ${x.human_url ? html`<img src="${x.human_url}" alt="human mask">` : ""}</div>
        <figcaption class="muted">label ${x.label}, predicted ${x.predicted}${Number.isFinite(x.agreement) ? ` · agreement ${pct(x.agreement)}` : ""}</figcaption>
      </figure>`)}</div>`;
}

// ---------------------------------------------------------------- drawing the page's parts
// Each takes the page's root, the feed (run, batches, epochs) and the live charts.

function drawHead(root, { run, batches }) {
  render(root.querySelector(".run-head"), headMarkup(run, batches));
}

function drawSystem(root, { run, batches }) {
  render(root.querySelector(".run-system"), systemMarkup(run, batches));
}

function drawCurves(root, { run, batches, epochs }, charts) {
  const s = liveSeries(run, batches, epochs);
  charts.loss.update(s.loss);
  charts.acc.update(s.acc);
  root.querySelector(".run-curves").dataset.batches = String(batches.length);
}

function drawLog(root, { run }) {
  const log = root.querySelector(".log-tail");
  const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
  log.textContent = run.log_tail || "(no output yet)";
  if (atBottom) log.scrollTop = log.scrollHeight;
}

/** Configuration, reproducibility record and downloads. */
function drawRecord(root, { run }) {
  render(root.querySelector(".run-config"), configTable(run.config));
  render(root.querySelector(".run-repro"), kvTable(recordEntries(run)));
  const dl = Object.entries(run.downloads || {});
  render(root.querySelector(".run-downloads"), dl.length
    ? html`${dl.map(([name, url]) => html`<a class="button" href="${url}" download>${name}</a> `)}`
    : html`<span class="muted">Available when the run has finished.</span>`);
}

/** Why a run has no final evaluation (yet): "Not finished yet." while it may still come. */
function noFinalText(run) {
  const why = emptyReason(run);
  if (why === "waiting" || why === "running") return "Not finished yet.";
  if (why === "cancelled") return "No final evaluation: the run was cancelled.";
  if (why === "failed") return "No final evaluation: the run failed.";
  return "No final evaluation was recorded.";
}

function drawFinal(root, { run }) {
  const el = root.querySelector(".run-final");
  if (!run.final_metrics) {
    el.textContent = noFinalText(run);
    el.dataset.reason = emptyReason(run);
    return;
  }
  render(el, finalMarkup(run));
  el.classList.remove("muted");
  drawHvra(el.querySelector(".final-hvra"), run.id);
  drawModelAtThreshold(el.querySelector(".final-threshold"), run.id);
}

async function drawSalience(root, id, run) {
  const el = root.querySelector(".run-salience");
  let s;
  try { s = await api(`/api/runs/${id}/salience`); } catch { return; }
  if (!el.isConnected || !s.available) return; // the page was left meanwhile
  render(el, salienceMarkup(s, run));
}

// what to draw again for each kind of news from the feed
const REDRAW = {
  detail: [drawHead, drawSystem, drawCurves, drawLog, drawRecord, drawFinal],
  run: [drawHead, drawSystem],
  log: [drawLog],
  epoch: [drawCurves],
  batch: [drawHead, drawCurves], // "(batch k / n)" follows the newest point
};

/** Cancel or retry; the page then follows the run again. */
async function act(root, id, path) {
  const error = root.querySelector(".action-error");
  error.textContent = "";
  try {
    await api(`/api/runs/${id}/${path}`, { method: "POST" });
  } catch (err) {
    error.textContent = err.message;
  }
}

export async function mount(root, ctx) {
  ensureChartStyles();
  const id = Number(ctx.params[0]);
  render(root, PAGE);
  const $ = (s) => root.querySelector(s);
  const charts = {
    loss: createChart($(".chart-loss"), { storageKey: "run.loss", smoothing: true, title: "Training loss", xLabel: "epoch" }),
    acc: createChart($(".chart-acc"), { storageKey: "run.acc", smoothing: true, yMin: 0, yMax: 1, xLabel: "epoch",
      title: "Accuracy (robust: a cheap check per epoch)" }),
  };
  let salienceShown = false;
  await loadRunSettings().catch(() => {}); // how the config table reads (without it: empty)
  const feed = new RunFeed(id, {
    onUpdate(what) {
      for (const draw of REDRAW[what]) draw(root, feed, charts);
      if (what === "detail" && feed.run.state === "succeeded" && !salienceShown) { salienceShown = true; drawSalience(root, id, feed.run); }
    },
    onMode: (mode) => { $(".run-curves").dataset.live = mode; },
    onError: (err) => { $(".action-error").textContent = `${err.message} (retrying)`; },
    onRecover: () => { $(".action-error").textContent = ""; },
  });
  $(".run-head").addEventListener("click", (e) => {
    const b = e.target.closest("button[data-act]");
    if (!b) return;
    if (b.dataset.act === "clone") ctx.navigate(`#/runs?clone=${id}`);
    else act(root, id, b.dataset.act).then(() => feed.follow());
  });
  feed.follow();
  return () => { feed.stop(); charts.loss.destroy(); charts.acc.destroy(); };
}
