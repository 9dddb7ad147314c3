// One study (#/studies/<id>): state, stimulus generation progress, the participant link (copy
// button, Prolific's placeholders explained, "preview as participant"), open/close,
// and the results: human detection per epsilon (with 95% intervals and the fitted curve) drawn
// beside each run's robust accuracy on the same epsilon axis (PGD, and the original AutoAttack
// on a stated subset of images), the model's accuracy at people's threshold, run against run
// (the paired comparison in one sentence, and per epsilon); exclusions; CSV export. Once
// stimuli exist, a preview: per run, the first few main images at every epsilon of the grid, at
// their native pixel size, with the L-inf distance to the source measured by the server.
// Usage: routed by app.js; exports mount(root, ctx).

import { labelResultsView } from "../components/label-results/label-results.js";
import { modelAtThresholdView } from "../components/model-threshold/model-threshold.js";
import { api } from "../lib/api.js";
import { dateTime, number as num, percent as pct, plural, points as pts, round } from "../lib/format.js";
import { html, raw, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { queueText } from "../lib/run-display.js";
import { linkStylesheet } from "../lib/styles.js";

/** The model's curve drawn beside people's: its robust accuracy at the study's own epsilons
 * (measured when the stimuli were made), else, for older studies, the run's evaluation. */
function modelCurve(r) {
  if (r.model_accuracy && r.model_accuracy.points.length) return r.model_accuracy.points;
  return r.robust_accuracy || [];
}

/** The model's AutoAttack curve at the study's epsilons (on a stated subset of its main images),
 * or [] for a study made before it was measured. */
function autoattackCurve(r) {
  return (r.model_autoattack && r.model_autoattack.points) || [];
}

/** "AutoAttack (standard, L∞, pyautoattack 0.2.0) on the first 32 of the study's main images". */
function autoattackMethod(a) {
  return `AutoAttack (${a.version}, L∞, ${a.package}) on ${a.images}`;
}

/** "PGD-20, 2 restarts, on 12 images": how the model's numbers were measured. */
function modelMethod(m) {
  return `PGD-${m.steps}, ${m.restarts} restart${m.restarts === 1 ? "" : "s"}, on ${m.n_images} image${m.n_images === 1 ? "" : "s"}`;
}

/** A threshold (or an interval bound) as text: a number only inside the tested grid. */
function thresholdText(value, beyond) {
  if (value !== null && value !== undefined) return `${num(value)} /255`;
  if (beyond === "above") return "above the largest epsilon tested";
  if (beyond === "below") return "below the smallest epsilon tested";
  return "not reached";
}

const COLORS = ["#1d4ed8", "#b91c1c", "#047857", "#7c3aed", "#b45309", "#0e7490", "#be185d", "#4d7c0f"];

/** Weibull with guess and lapse, as fitted by the server (x in grey levels). */
function weibull(x, f) {
  const F = x <= 0 ? 0 : 1 - Math.exp(-Math.pow(x / f.alpha_255, f.beta));
  return f.guess + (1 - f.guess - f.lapse) * F;
}

function plot(results) {
  const W = 720, H = 340, L = 56, R = 20, T = 16, B = 44;
  const all = new Set();
  for (const r of results.runs) {
    r.points.forEach((p) => all.add(p.epsilon_255));
    modelCurve(r).forEach((p) => all.add(p.epsilon_255));
    autoattackCurve(r).forEach((p) => all.add(p.epsilon_255));
  }
  const maxE = Math.max(1, ...all);
  // log-like axis that keeps 0: x = log2(1 + eps)
  const sx = (e) => L + (Math.log2(1 + e) / Math.log2(1 + maxE)) * (W - L - R);
  const sy = (v) => T + (1 - v) * (H - T - B);
  const parts = [];
  for (let v = 0; v <= 1.0001; v += 0.25) {
    parts.push(`<line x1="${L}" x2="${W - R}" y1="${sy(v)}" y2="${sy(v)}" stroke="#eee"/>`);
    parts.push(`<text x="${L - 6}" y="${sy(v) + 4}" text-anchor="end">${pct(v, 0)}</text>`);
  }
  [...all].sort((a, b) => a - b).forEach((e) => {
    parts.push(`<line x1="${sx(e)}" x2="${sx(e)}" y1="${H - B}" y2="${H - B + 5}" stroke="#666"/>`);
    parts.push(`<text x="${sx(e)}" y="${H - B + 18}" text-anchor="middle">${round(e, 2)}</text>`);
  });
  parts.push(`<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">epsilon (grey levels, /255)</text>`);
  parts.push(`<line x1="${L}" x2="${W - R}" y1="${H - B}" y2="${H - B}" stroke="#666"/>`);
  results.runs.forEach((r, i) => {
    const c = COLORS[i % COLORS.length];
    const rate = (p) => (results.design === "2afc" ? p.percent_correct : p.hit_rate);
    if (r.fit) {
      const pts = [];
      for (let k = 0; k <= 120; k++) {
        const e = Math.pow(2, (k / 120) * Math.log2(1 + maxE)) - 1;
        pts.push(`${sx(e).toFixed(1)},${sy(weibull(e, r.fit)).toFixed(1)}`);
      }
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" points="${pts.join(" ")}"/>`);
      if (r.fit.threshold_255) {
        parts.push(`<line x1="${sx(r.fit.threshold_255)}" x2="${sx(r.fit.threshold_255)}" y1="${sy(r.fit.criterion)}" y2="${H - B}" stroke="${c}" stroke-dasharray="2 3"/>`);
      }
    }
    for (const p of r.points) {
      if (!p.n) continue;
      parts.push(`<line x1="${sx(p.epsilon_255)}" x2="${sx(p.epsilon_255)}" y1="${sy(p.ci_low)}" y2="${sy(p.ci_high)}" stroke="${c}"/>`);
      parts.push(`<circle cx="${sx(p.epsilon_255)}" cy="${sy(rate(p))}" r="4" fill="${c}"><title>${plural(p.n, "trial")}</title></circle>`);
    }
    const model = modelCurve(r);
    if (model.length) {
      const pts = model.map((p) => `${sx(p.epsilon_255).toFixed(1)},${sy(p.accuracy).toFixed(1)}`);
      parts.push(`<polyline class="model-curve" fill="none" stroke="${c}" stroke-width="2" stroke-dasharray="7 4" points="${pts.join(" ")}"/>`);
      model.forEach((p) => parts.push(`<rect class="model-point" x="${sx(p.epsilon_255) - 3}" y="${sy(p.accuracy) - 3}" width="6" height="6" fill="#fff" stroke="${c}"><title>model ${pct(p.accuracy)} at ${round(p.epsilon_255, 2)}/255</title></rect>`));
    }
    const aa = autoattackCurve(r);
    if (aa.length) {
      const pts = aa.map((p) => `${sx(p.epsilon_255).toFixed(1)},${sy(p.accuracy).toFixed(1)}`);
      parts.push(`<polyline class="autoattack-curve" fill="none" stroke="${c}" stroke-width="2" stroke-dasharray="2 3" points="${pts.join(" ")}"/>`);
      aa.forEach((p) => parts.push(`<path class="autoattack-point" d="M${sx(p.epsilon_255).toFixed(1)} ${(sy(p.accuracy) - 4).toFixed(1)} l4 7 h-8 z" fill="#fff" stroke="${c}"><title>model, AutoAttack ${pct(p.accuracy)} at ${round(p.epsilon_255, 2)}/255</title></path>`));
    }
  });
  // every value above is a number computed here; no user text goes into this markup
  return raw(`<svg class="study-plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"
    aria-label="Human detection and the model's robust accuracy (PGD and AutoAttack) per epsilon">${parts.join("")}</svg>`);
}

function modelHeader(r) {
  return r.model_accuracy
    ? html`model robust acc.<br><span class="muted small">${modelMethod(r.model_accuracy)}</span>`
    : html`model robust acc.<br><span class="muted small">run's evaluation</span>`;
}

/** "a – b" for an interval whose ends may be missing (one participant: no interval). */
function span(lo, hi, fmt) {
  if (lo === null || lo === undefined || hi === null || hi === undefined) return "no interval";
  return `${fmt(lo)} – ${fmt(hi)}`;
}

function intervalText(f) {
  return `95% credible interval ${thresholdText(f.threshold_ci_low, f.threshold_ci_low_beyond)} – ${thresholdText(f.threshold_ci_high, f.threshold_ci_high_beyond)}`;
}

/** The fit's numbers a reviewer asks for: slope, asymptotes, overdispersion, goodness of fit. */
function fitDetails(f, is2afc) {
  const n2 = (v) => num(v, 2);
  return html`<ul class="fit-details muted small">
    <li>${f.method}; ${plural(f.n_participants, "participant")}, ${plural(f.n_trials, "trial")} in ${f.n_blocks} participant × epsilon blocks (catch trials included: they measure the upper asymptote).</li>
    <li>Slope (Weibull β) ${n2(f.beta)} (${span(f.beta_ci[0], f.beta_ci[1], n2)}) · lapse rate ${pct(f.lapse)} (${span(f.lapse_ci[0], f.lapse_ci[1], pct)})${is2afc ? "" : html` · false-alarm rate (lower asymptote) ${pct(f.guess)} (${span(f.guess_ci[0], f.guess_ci[1], pct)})`}</li>
    <li>Overdispersion η ${num(f.eta, 3)} (${span(f.eta_ci[0], f.eta_ci[1], (v) => num(v, 3))}): 0 when participants' blocks vary no more than binomially; it widens the threshold's interval by what participants differ.</li>
    <li>Goodness of fit: deviance ${num(f.deviance, 1)} over ${f.n_blocks} blocks; posterior predictive p = ${num(f.deviance_p, 3)} (small p: the curve fits worse than its own replicated data).</li>
  </ul>`;
}

function flagList(f) {
  if (!f.flags.length) return "";
  return html`<ul class="fit-flags">${f.flags.map((text) => html`<li class="form-error">${text}</li>`)}</ul>`;
}

function individualFits(r) {
  const fits = r.individual_fits || [];
  return html`<details class="individual-fits"><summary>Per-participant fits (${fits.length})</summary>
    <p class="muted small">${r.individual_fit_rule}.</p>
    ${fits.length ? html`<table class="data"><thead><tr><th>Participant</th><th>Threshold</th><th>95% credible interval</th><th class="num">β</th><th class="num">lapse</th><th>Flags</th></tr></thead>
      <tbody>${fits.map((p) => html`<tr><td>${p.participant}</td><td>${thresholdText(p.threshold_255, p.threshold_255_beyond)}</td>
        <td>${thresholdText(p.ci_low, p.ci_low_beyond)} – ${thresholdText(p.ci_high, p.ci_high_beyond)}</td>
        <td class="num">${num(p.beta)}</td><td class="num">${pct(p.lapse)}</td><td>${p.flags.join(" ")}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">No participant has enough trials for a fit of their own.</p>`}
  </details>`;
}

/** QUEST+ placement: each participant's own staircase estimate for the run (none for
 * constant stimuli). */
function questEstimates(r) {
  const rows = r.quest_estimates || [];
  if (!rows.length) return "";
  const why = (p) => p.stopped === "posterior width" ? "stopped early: the interval was narrow enough"
    : p.stopped === "trial count" ? "all its trials" : "still running";
  return html`<details class="quest-estimates"><summary>QUEST+ estimates per participant (${rows.length})</summary>
    <p class="muted small">Each participant's staircase posterior after their last counted answer: the threshold halfway up the sigmoid (75% correct when nobody lapses), with its 95% credible interval.</p>
    <table class="data"><thead><tr><th>Participant</th><th class="num">answers</th><th>Threshold</th><th>95% credible interval</th><th>Run</th><th>In the group analysis</th></tr></thead>
      <tbody>${rows.map((p) => html`<tr><td>${p.participant}</td><td class="num">${p.answered}</td><td class="quest-threshold">${num(p.threshold_255, 2)}/255</td>
        <td>${num(p.ci_low_255, 2)} – ${num(p.ci_high_255, 2)} /255</td><td>${why(p)}</td><td>${p.excluded ? `no: ${p.excluded}` : "yes"}</td></tr>`)}</tbody></table>
  </details>`;
}

function analysisState(res) {
  const a = res.analysis;
  if (a.state === "computing") return html`<p class="analysis-state muted" role="status">The analysis is being computed from ${plural(a.answers_now, "answer")}; this page shows it when it is ready.</p>`;
  const when = a.computed_at ? dateTime(a.computed_at) : "";
  const note = a.state === "current" ? "" : html` <strong>A newer analysis is being computed (${plural(a.answers_now, "answer")} now).</strong>`;
  return html`<p class="analysis-state muted small" role="status">Analysis of ${plural(a.answers, "answer")}, computed ${when} in ${num(a.seconds, 1)} s.${note}</p>`;
}

function thresholdLine(r, is2afc) {
  const f = r.fit;
  const what = is2afc
    ? "halfway between chance and the upper asymptote: 75% correct when nobody lapses"
    : "halfway between the false-alarm rate and the upper asymptote";
  if (!f) return html`<p class="threshold">Threshold: <strong>no fit</strong> <span class="muted">${r.fit_note || ""}</span></p>`;
  return html`<p class="threshold">Threshold (${what}): <strong>${thresholdText(f.threshold_255, f.threshold_beyond)}</strong> (${intervalText(f)})</p>
    ${is2afc ? "" : html`<p class="threshold-d1">Criterion-free threshold (d′ = 1 against the fitted false-alarm rate): <strong>${thresholdText(f.threshold_d1_255, f.threshold_d1_beyond)}</strong>
      (95% credible interval ${thresholdText(f.threshold_d1_ci_low, f.threshold_d1_ci_low_beyond)} – ${thresholdText(f.threshold_d1_ci_high, f.threshold_d1_ci_high_beyond)})</p>`}
    ${flagList(f)}${fitDetails(f, is2afc)}`;
}

/** Run against run: per pair of runs, what the paired comparison shows in one sentence (the
 * server words it: "not shown" when its interval holds no difference), then run b minus run a
 * at each epsilon with its interval, over the participants who saw both runs. */
function comparisonsView(res) {
  const list = res.comparisons || [];
  if (!list.length) return "";
  const is2afc = res.design === "2afc";
  const thresholds = (t) => (t.threshold_a_255 && t.threshold_b_255
    ? `; the two thresholds ${num(t.threshold_a_255)} and ${num(t.threshold_b_255)} /255` : "");
  return html`<div class="run-comparisons"><h3>Run against run</h3>
    ${list.map((c) => html`<div class="run-comparison" data-a="${c.run_a.run_id}" data-b="${c.run_b.run_id}" data-shows="${c.shows}">
      <p class="comparison-statement"><strong>${c.statement}</strong></p>
      ${c.flags.length ? html`<ul class="fit-flags">${c.flags.map((f) => html`<li class="form-error">${f}</li>`)}</ul>` : ""}
      ${c.points.length ? html`<table class="data comparison-table"><thead><tr><th class="num">eps /255</th><th class="num">people</th>
        <th class="num">${c.run_a.run_name}</th><th class="num">${c.run_b.run_name}</th><th class="num">difference</th><th>95% CI</th>
        ${is2afc ? "" : html`<th class="num">d′ difference</th><th>95% CI</th>`}</tr></thead>
        <tbody>${c.points.map((p) => html`<tr><td class="num">${p.epsilon_255}</td><td class="num">${p.n_participants}</td>
          <td class="num">${pct(p.a)}</td><td class="num">${pct(p.b)}</td><td class="num">${pts(p.difference)}</td><td>${span(p.ci_low, p.ci_high, pts)}</td>
          ${is2afc ? "" : html`<td class="num">${num(p.d_prime_difference)}</td><td>${span(p.d_prime_ci_low, p.d_prime_ci_high, num)}</td>`}</tr>`)}</tbody></table>` : ""}
      <p class="muted small">Paired over the participants who saw both runs: each of ${c.threshold_ratio.resamples} resamples draws them with
        replacement and keeps both of a person's runs together. The ratio: ${c.threshold_ratio.method}${thresholds(c.threshold_ratio)}.
        Per epsilon: ${c.run_b.run_name} minus ${c.run_a.run_name} in ${is2afc ? "percent correct" : "hit rate"} (percentage points), 95%
        interval over the same resamples, never narrower than Newcombe's interval for two independent proportions${is2afc ? "" : "; d′ as each participant's own, the mean of their paired differences"}.</p>
    </div>`)}</div>`;
}

function resultsView(res) {
  const is2afc = res.design === "2afc";
  const older = res.runs.some((r) => !r.model_accuracy);
  const withAa = res.runs.find((r) => r.model_autoattack);
  const included = res.participants.included === null ? "not yet analysed" : res.participants.included;
  return html`
    ${analysisState(res)}
    <p>${plural(res.participants.total, "participant")}, ${res.participants.completed} completed, ${included} included in the analysis.</p>
    ${res.runs.length ? html`
    <div class="legend">${res.runs.map((r, i) => html`<span><i style="background:${COLORS[i % COLORS.length]}"></i>${r.run_name} (${r.method})</span>`)}
      <span>solid: people ${is2afc ? "(percent correct, chance 50%)" : "(hit rate)"} · dashed, squares: model robust accuracy under PGD at the study's epsilons${older ? " (older study: the runs' own evaluation where recorded)" : ""}${withAa ? " · dotted, triangles: under AutoAttack" : ""}</span></div>
    ${plot(res)}
    <p class="model-methods muted small">The model's curves: ${res.runs.some((r) => r.model_accuracy) ? `${modelMethod(res.runs.find((r) => r.model_accuracy).model_accuracy)} (the study's attack, each image quantised to 8 bits as shown to people)` : "PGD from the runs' own evaluation"}${withAa ? html`; <span class="autoattack-method">${autoattackMethod(withAa.model_autoattack)}</span> (the attack a run's final evaluation reports; ${plural(withAa.model_autoattack.n_images, "image")}, not quantised)` : ""}. Each is the worst case over the epsilons up to its own.</p>
    <p class="muted small">Groups of fewer than ${res.min_participants} participants are flagged. Every interval is over participants: per point, a bootstrap of participants (2,000 resamples), never narrower than the Wilson interval of the trials${is2afc ? "" : "; d′ and c are each participant's own (log-linear corrected), averaged"}; the curve, psignifit's posterior with one block per participant and epsilon.</p>` : ""}
    ${comparisonsView(res)}
    ${res.runs.map((r) => html`
      <h3>${r.run_name}</h3>
      ${thresholdLine(r, is2afc)}
      <div class="run-model-threshold" data-run="${r.run_id}">${modelAtThresholdView(r.model_at_threshold)}</div>
      <table class="data results-table" data-run="${r.run_id}"><thead><tr><th class="num">eps /255</th><th class="num">trials</th><th class="num">people</th>
        ${is2afc ? html`<th class="num">correct</th><th>95% CI</th>` : html`<th class="num">hit rate</th><th>95% CI</th><th class="num">false alarms</th><th class="num">d′</th><th>95% CI</th><th class="num">c</th><th>95% CI</th>`}
        <th class="num">${modelHeader(r)}</th>${withAa ? html`<th class="num">AutoAttack acc.<br><span class="muted small">${r.model_autoattack ? plural(r.model_autoattack.n_images, "image") : "not measured"}</span></th>` : ""}</tr></thead>
      <tbody>${r.points.map((p) => {
        const ra = modelCurve(r).find((q) => Math.abs(q.epsilon_255 - p.epsilon_255) < 1e-3);
        const aa = autoattackCurve(r).find((q) => Math.abs(q.epsilon_255 - p.epsilon_255) < 1e-3);
        const label = p.role === "chance check" ? html`${p.epsilon_255} <span class="muted small">(chance check)</span>` : p.epsilon_255;
        return html`<tr><td class="num">${label}</td><td class="num">${p.n}</td><td class="num">${p.n_participants}</td>
          ${is2afc ? html`<td class="num">${pct(p.percent_correct)}</td><td>${span(p.ci_low, p.ci_high, pct)}</td>`
            : html`<td class="num">${pct(p.hit_rate)}</td><td>${span(p.ci_low, p.ci_high, pct)}</td><td class="num">${pct(p.false_alarm_rate)}</td>
              <td class="num">${num(p.d_prime)}</td><td>${span(p.d_prime_ci_low, p.d_prime_ci_high, num)}</td>
              <td class="num">${num(p.criterion)}</td><td>${span(p.criterion_ci_low, p.criterion_ci_high, num)}</td>`}
          <td class="num model-acc">${ra ? pct(ra.accuracy) : "not measured"}</td>${withAa ? html`<td class="num model-aa">${aa ? pct(aa.accuracy) : "not measured"}</td>` : ""}</tr>`;
      })}
      ${r.catch ? html`<tr class="catch-row"><td class="num">${r.catch.epsilon_255} <span class="muted small">(catch)</span></td><td class="num">${r.catch.n}</td><td></td>
        <td class="num">${pct(r.catch.rate)}</td><td>${span(r.catch.ci_low, r.catch.ci_high, pct)}</td>${is2afc ? "" : html`<td colspan="6"></td>`}<td></td>${withAa ? html`<td></td>` : ""}</tr>` : ""}
      </tbody></table>
      ${individualFits(r)}
      ${questEstimates(r)}`)}
    <h3>Excluded participants</h3>
    ${res.excluded.length ? html`<table class="data"><thead><tr><th>Participant</th><th>Reason</th></tr></thead>
      <tbody>${res.excluded.map((e) => html`<tr><td>${e.participant}</td><td>${e.reason}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">None.</p>`}`;
}

/** Put text on the clipboard; the older route for pages not served over https. */
async function copyText(text) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement("textarea");
  area.value = text;
  area.setAttribute("readonly", "");
  area.style.position = "fixed";
  area.style.opacity = "0";
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand("copy");
  area.remove();
  if (!ok) throw new Error("The browser did not allow copying; select the link and copy it.");
}

const PROLIFIC_PARAMS = [
  ["PROLIFIC_PID", "the participant's Prolific id (one session per id: a returning participant resumes)"],
  ["STUDY_ID", "your Prolific study's id"],
  ["SESSION_ID", "the id of this participant's Prolific submission"],
];

function linkBox(s) {
  const base = `${location.origin}${s.link_path}`;
  const prolific = `${base}?${PROLIFIC_PARAMS.map(([k]) => `${k}={{%${k}%}}`).join("&")}`;
  const canPreview = ["ready", "open", "closed"].includes(s.state);
  return html`<div class="participant-link-box">
    <h2>Participant link</h2>
    <p>For Prolific, paste this as the study URL (with "URL parameters" on):</p>
    <p class="link-row"><code class="participant-link" data-link="prolific">${prolific}</code>
      <button type="button" data-act="copy-link">Copy link</button>
      <span class="copy-status muted" role="status" aria-live="polite"></span></p>
    <p class="muted">Prolific replaces each <code>{{%…%}}</code> placeholder with the participant's own value when they
      start; you do not edit them:</p>
    <ul class="muted placeholders">${PROLIFIC_PARAMS.map(([k, what]) => html`<li><code>{{%${k}%}}</code>: ${what}</li>`)}</ul>
    <p class="muted">Outside Prolific, share <code class="plain-link">${base}</code>: every visitor is an anonymous
      participant. A participant counts only once they consent.</p>
    <p>${canPreview
      ? html`<a class="button" data-act="preview" href="${s.link_path}?preview=${s.id}" target="_blank" rel="noopener">Preview as participant</a>
        <span class="muted">the whole flow as a participant sees it; nothing is stored and no participant is counted.</span>`
      : html`<span class="muted">Preview as participant becomes available once the stimuli are made.</span>`}</p>
  </div>`;
}

const PREVIEW_IMAGES = 4; // source images shown per run

/** The epsilons (grey levels) the main stimuli were made at: the grid, plus 0 for yes/no. */
function stimulusGrid(s) {
  const grid = new Set(s.config.epsilons_255.map(Number));
  if (s.design === "yesno") grid.add(0);
  return [...grid].sort((a, b) => a - b);
}

const sameEps = (a, b) => Math.abs(a - b) < 1e-4;
const epsText = (e) => String(round(e, 3));

function stimulusCell(st, design) {
  if (!st) {
    // a label study keeps only the adversarial images that still fool the model
    return html`<td class="missing muted">${design === "label" ? "none: the model was not fooled here" : "not made yet"}</td>`;
  }
  const over = st.linf_255 !== null && st.linf_255 > st.epsilon_255 + 1e-6;
  const size = st.width ? html` width="${st.width}" height="${st.height}"` : "";
  return html`<td class="${over ? "over-budget" : ""}" data-stimulus="${st.id}">
    <img src="${st.image_url}"${size} alt="source image ${st.source_image_id} at epsilon ${st.epsilon_255}/255" loading="lazy">
    <div class="eps">ε ${epsText(st.epsilon_255)}/255</div>
    <div class="linf">L∞ ${st.linf_255 === null ? "?" : st.linf_255}${over ? " over budget" : ""}</div></td>`;
}

function runPreview(runId, items, grid, design) {
  const rows = new Map(); // source image id -> stimuli, in the server's order
  for (const st of items) {
    if (!rows.has(st.source_image_id)) {
      if (rows.size >= PREVIEW_IMAGES) continue;
      rows.set(st.source_image_id, []);
    }
    rows.get(st.source_image_id).push(st);
  }
  const name = items.length ? items[0].run_name : `run ${runId}`;
  if (!rows.size) return html`<h3>${name}</h3><p class="muted">No main stimuli for this run yet.</p>`;
  return html`<h3>${name}</h3>
    <table class="stimulus-grid" data-run="${runId}"><thead><tr><th>image</th>
      ${grid.map((e) => html`<th>ε ${epsText(e)}</th>`)}</tr></thead>
    <tbody>${[...rows].map(([imageId, list]) => html`<tr><th>${imageId}</th>
      ${grid.map((e) => stimulusCell(list.find((st) => sameEps(st.epsilon_255, e)), design))}</tr>`)}</tbody></table>`;
}

async function loadPreview(box, s) {
  const grid = stimulusGrid(s);
  const limit = Math.min(200, PREVIEW_IMAGES * grid.length);
  const pages = await Promise.all(s.config.run_ids.map((rid) =>
    api(`/api/studies/${s.id}/stimuli?run_id=${encodeURIComponent(rid)}&purpose=main&limit=${limit}`)));
  const counts = pages.length ? pages[0].by_purpose : {};
  const order = ["main", "catch", "practice", "example", "reference"];
  const summary = Object.entries(counts)
    .sort(([a], [b]) => order.indexOf(a) - order.indexOf(b))
    .map(([p, n]) => `${n} ${p}`).join(", ");
  render(box, html`<h2>Stimuli</h2>
    <p class="muted">${summary}. The first ${PREVIEW_IMAGES} main images of each run at every epsilon, at
      native pixel size; under each: its epsilon and the L∞ distance to the source image measured from
      the files (grey levels, /255), which must not exceed the epsilon.</p>
    ${s.config.run_ids.map((rid, i) => runPreview(rid, pages[i].data, grid, s.design))}`);
}

export async function mount(root, ctx) {
  linkStylesheet(new URL("./studies.css", import.meta.url)); // the studies pages share it
  const id = ctx.params[0];
  let stopPolling = () => {};

  /** Fetch and draw the study; true while its stimuli are being made (then it is polled). */
  async function load() {
    const s = await api(`/api/studies/${id}`);
    render(root, html`<section class="page study-detail">
      <p><a href="#/studies">← Studies</a></p>
      <h1>${s.name}</h1>
      <p>Design <strong>${s.design}</strong> · state <span class="badge state-${s.state}">${s.state}</span> ·
        ${plural(s.num_stimuli, "stimulus", "stimuli")} · ${plural(s.num_sessions, "participant")} (${s.num_completed} completed) ·
        <span data-field="max-sessions">${s.config.max_sessions ? `at most ${s.config.max_sessions} through the link` : "no limit on the link"}</span></p>
      ${s.state === "generating" && s.queue ? html`<p class="study-queue" data-position="${s.queue.position}" data-listening="${s.queue.listening}">Making stimuli: waiting in the queue.
        ${queueText(s.queue)} <a href="#/queue">The queue</a>.</p>` : ""}
      ${s.state === "generating" && !s.queue ? html`<p>Making stimuli… <progress max="1" value="${s.progress}"></progress> ${pct(s.progress)}</p>` : ""}
      ${s.error ? html`<p class="form-error" role="alert">${s.error}</p>` : ""}
      <div class="actions">
        ${["draft", "failed"].includes(s.state) ? html`<button class="primary" data-act="generate">Make stimuli</button>` : ""}
        ${["ready", "closed"].includes(s.state) ? html`<button class="primary" data-act="open">Open to participants</button>` : ""}
        ${s.state === "open" ? html`<button data-act="close">Close</button>` : ""}
        <a href="/api/studies/${s.id}/trials.csv" download>Download trials (CSV)</a>
        <a href="/api/studies/${s.id}/trials.json" download>(JSON)</a>
      </div>
      ${linkBox(s)}
      <p class="muted">${s.config.placement === "quest"
        ? html`QUEST+ placement over ${s.config.epsilons_255.length} epsilons ${s.config.epsilons_255[0]}–${s.config.epsilons_255.at(-1)} /255 · ${plural(s.config.quest.max_trials, "trial")} per run${s.config.quest.stop_ci_ratio ? html` (or until the threshold interval spans ×${s.config.quest.stop_ci_ratio})` : ""} ·`
        : html`Epsilons ${s.config.epsilons_255.join(", ")} /255 · ${plural(s.config.trials_per_condition, "trial")} per condition ·`}
        ${s.config.catch_trials} catch trials at ${s.config.catch_epsilon_255}/255 · ${s.config.practice_trials} practice trials ·
        PGD ${s.config.attack.steps} steps, step ${s.config.attack.alpha_ratio} × eps.</p>
      ${s.num_stimuli && s.state !== "generating" ? html`<div class="study-stimuli"><h2>Stimuli</h2><p class="muted">Loading…</p></div>` : ""}
      <div class="study-results"><h2>Results</h2><p class="muted">Loading…</p></div>
    </section>`);
    for (const act of ["generate", "open", "close"]) {
      const b = root.querySelector(`[data-act=${act}]`);
      if (b) b.addEventListener("click", async () => {
        b.disabled = true;
        try { await api(`/api/studies/${id}/${act}`, { method: "POST" }); } catch (err) { alert(err.message); }
        watch();
      });
    }
    const copy = root.querySelector("[data-act=copy-link]");
    copy.addEventListener("click", async () => {
      const status = root.querySelector(".copy-status");
      try {
        await copyText(root.querySelector("[data-link=prolific]").textContent);
        status.textContent = "Copied.";
      } catch (err) {
        status.textContent = err.message;
      }
    });
    const preview = root.querySelector(".study-stimuli");
    if (preview) {
      loadPreview(preview, s).catch((err) => render(preview, html`<h2>Stimuli</h2><p class="form-error" role="alert">${err.message}</p>`));
    }
    const box = root.querySelector(".study-results");
    if (s.num_sessions) {
      await showResults(box);
    } else {
      render(box, html`<h2>Results</h2><p class="muted">No participants yet.</p>`);
    }
    return s.state === "generating";
  }

  let resultsTimer = null;
  /** The results as last analysed; while a newer analysis is on its way, asked again (the
   * server computes in the background, never for this request). */
  async function showResults(box) {
    clearTimeout(resultsTimer);
    const res = await api(`/api/studies/${id}/results`);
    if (!box.isConnected) return;
    const view = res.design === "label" ? labelResultsView(res, analysisState(res)) : resultsView(res);
    render(box, html`<h2>Results</h2>${view}`);
    if (res.analysis.state !== "current") {
      resultsTimer = setTimeout(() => showResults(box).catch(() => {}), 3000);
    }
  }

  /** A failed refresh is said above the page (the next successful one redraws it away). */
  function showPollError(err) {
    let box = root.querySelector(".poll-error");
    if (!box) {
      box = document.createElement("p");
      box.className = "form-error poll-error";
      box.setAttribute("role", "alert");
      root.prepend(box);
    }
    box.textContent = `${err.message} (retrying)`;
  }

  /** Keep the page current while the stimuli are being made. */
  function watch(immediate = true) {
    stopPolling();
    stopPolling = poll(load, 2000, { immediate, onError: showPollError });
  }

  if (await load()) watch(false);
  return () => {
    stopPolling();
    clearTimeout(resultsTimer);
  };
}
