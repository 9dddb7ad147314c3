// How a training run reads on the runs, run and compare pages: its state badge, its final
// evaluation (AutoAttack at the training ε as the headline robust accuracy, PGD beside it) and
// the gradient-masking checks it failed. Markup through lib/html.js, numbers through
// lib/format.js.
// Also the progress of a run and of any queued work: the bar's percentage (full only once the
// run has ended: its final evaluation is part of it), what a running run is doing (training, or
// which stage of its final evaluation), and where waiting work stands in the queue.
// Usage: import { finalOf, autoattackCell, pgdCell, maskingBadge, stateBadge } from "../lib/run-display.js";
//   runPercent(run); phaseText(run); queueText(place)   // place: a run's or a study's `queue`
//   cleanCell(run); agreementCell(run); emptyCell(emptyReason(run)); chanceBadge(run)   // a cell, or why it is empty

import { duration, greyLevels, percent as pct } from "./format.js";
import { html } from "./html.js";

/** The final evaluation's figures ({} before the run has finished). */
export function finalOf(run) {
  const f = run.final_metrics || {};
  return f.final || f;
}

export function stateBadge(state) {
  return html`<span class="state state-${state}" data-state="${state}">${state}</span>`;
}

// ------------------------------------------------------------------ progress and the queue

/** A run's progress as a whole percentage for its bar: 100 only once it has succeeded (the
 * server keeps a running run's progress under 1 until its final evaluation has ended). */
export function runPercent(run) {
  if (run.state === "succeeded") return 100;
  return Math.min(99, Math.floor((Number(run.progress) || 0) * 100));
}

/** What a running run does: "training", or "final evaluation: <stage> (k / n images, step i
 * of m)" ("on n images" before any is done); "" when it is not running. */
export function phaseText(run) {
  if (run.state !== "running") return "";
  const w = run.work || {};
  const e = w.evaluation;
  if (w.phase === "evaluating" && e) {
    // AutoAttack reports its images when an attack ends (one batch of 250): "on n images" until then
    const images = e.images_done > 0 ? `${e.images_done} / ${e.images} images` : `on ${e.images} images`;
    return `final evaluation: ${e.label} (${images}, step ${e.stage_index} of ${e.stages})`;
  }
  return "training";
}

/** Where waiting work stands: its position, and when it should start, or that no worker is
 * listening ("" without a place). */
export function queueText(place) {
  if (!place) return "";
  const where = `Position ${place.position} of ${place.of} in the queue` +
    (place.ahead_running ? ` (${place.ahead_running} running now)` : "");
  if (!place.listening) return `${where} · waiting for a worker: none is listening.`;
  const start = place.start_in_s === null || place.start_in_s === undefined ? "at a time not yet known"
    : place.start_in_s < 1 ? (place.start_is_lower_bound ? "as soon as the work ahead ends" : "now")
      : `in ${place.start_is_lower_bound ? "no less than" : "about"} ${duration(place.start_in_s)}`;
  const length = Number.isFinite(place.duration_s) ? ` It should take about ${duration(place.duration_s)}.` : "";
  return `${where} · expected to start ${start}${place.worker ? ` on worker ${place.worker}` : ""}.${length}` +
    (place.note ? ` ${place.note}` : "");
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

/** Why a run has no final figure to show: its state while it has none, else "not measured". */
export function emptyReason(run) {
  if (!run.final_metrics) {
    const why = { cancelled: "cancelled", failed: "failed", queued: "waiting", running: "running" }[run.state];
    return why || "not measured";
  }
  return "not measured";
}

/** An empty cell that says why it is empty. */
export const emptyCell = (why) => html`<span class="muted empty-reason">${why}</span>`;

/** A badge for a model no better than guessing: clean accuracy within two standard errors
 * of 1 / classes on its n_test images (runs that recorded their number of classes). */
export function chanceBadge(run) {
  const f = finalOf(run);
  if (!f.num_classes || !f.n_test || f.clean_accuracy === undefined) return "";
  const chance = 1 / f.num_classes;
  const se = Math.sqrt((chance * (1 - chance)) / f.n_test);
  if (f.clean_accuracy > chance + 2 * se) return "";
  return html`<span class="badge off chance-badge" title="Clean accuracy ${pct(f.clean_accuracy)} on ${f.n_test} test images; guessing among ${f.num_classes} classes gives ${pct(chance)}">at chance (${pct(chance)})</span>`;
}

/** Why a run has no salience agreement with the human masks: its state while it has no
 * figures, no mask set chosen for the run (PGD-AT, standard, maps made by a model), or not
 * measured. */
export function agreementReason(run) {
  if (!run.final_metrics) return emptyReason(run);
  return run.mask_set_id ? "not measured" : "no mask set for this run";
}

/** Table cell: clean accuracy with the number of test images it is on, flagged when at chance. */
export function cleanCell(run) {
  if (!run.final_metrics) return emptyCell(emptyReason(run));
  const f = finalOf(run);
  if (!Number.isFinite(f.clean_accuracy)) return emptyCell("not measured");
  return html`<span class="clean-acc">${pct(f.clean_accuracy)}</span>${f.n_test ? html` <span class="muted">n ${f.n_test}</span>` : ""} ${chanceBadge(run)}`;
}

/** Table cell: the share of the model's salience inside the human masks, or why there is none. */
export function agreementCell(run) {
  const v = (finalOf(run).salience_agreement || {}).top_mass_in_mask;
  if (run.final_metrics && Number.isFinite(v)) return pct(v);
  return emptyCell(agreementReason(run));
}

/** Table cell: AutoAttack accuracy and its number of images ("not run" where it was not). */
export function autoattackCell(run) {
  if (!run.final_metrics) return emptyCell(emptyReason(run));
  const aa = autoattackOf(run);
  if (!aa) return html`<span class="muted">not run</span>`;
  return html`<span class="aa-acc" title="AutoAttack (${aa.version}, L∞) at ε ${greyLevels(aa.eps)} on ${aa.n} test images">${pct(aa.accuracy)}</span>
    <span class="muted">n ${aa.n}</span>`;
}

/** Table cell: PGD at the training ε with its steps × restarts and images. */
export function pgdCell(run) {
  const p = pgdAtTrainEps(run);
  if (!p) return emptyCell(emptyReason(run));
  const at = Math.abs(p.eps - run.config.eps) < 0.5 / 255 ? "" : ` at ${greyLevels(p.eps)}`;
  return html`<span class="pgd-acc" title="${pgdLabel(p)} at ε ${greyLevels(p.eps)}">${pct(p.accuracy)}</span>
    <span class="muted">${pgdLabel(p, { short: true })}${at} · n ${p.n}</span>`;
}

// ------------------------------------------------------------------ gradient masking

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
