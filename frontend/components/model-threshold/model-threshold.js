// The model beside the people (issue 25, item 6): a run's robust accuracy at people's measured
// detection threshold, read off the model's accuracy-vs-epsilon curves (AutoAttack and PGD, each
// named with its image count) linearly in ln ε between the measured epsilons, with the interval
// carried over from the threshold's 95% interval (a larger ε, a lower accuracy). A threshold or
// bound off the tested epsilons gives no number, only what the curve's ends say ("at most",
// "at least"). Shown on the study page per run (modelAtThresholdView, from the study's results,
// runs[].model_at_threshold) and on the run page per detection study (drawModelAtThreshold,
// GET /api/runs/<id>/results, key accuracy_at_threshold; nothing is drawn when no study has it).
// Usage: modelAtThresholdView(m); drawModelAtThreshold(element, runId).

import { api } from "../../lib/api.js";
import { number as num, percent as pct, plural } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";

/** A threshold or bound in grey levels; off the grid, where it lies. */
function eps(value, beyond) {
  if (value !== null && value !== undefined) return `${num(value)} /255`;
  if (beyond === "above") return "above the largest epsilon tested";
  if (beyond === "below") return "below the smallest epsilon tested";
  return "not reached";
}

/** An accuracy read at a threshold (or bound); off the grid, what the curve's end says: above
 * the grid the accuracy is at most the one at the largest ε, below it at least the smallest's. */
function acc(value, beyond, c) {
  if (value !== null && value !== undefined) return pct(value);
  if (beyond === "above") return `at most ${pct(c.at_largest)}`;
  if (beyond === "below") return `at least ${pct(c.at_smallest)}`;
  return "–";
}

/** One run's figures at the people's threshold: the threshold, then a row per curve. */
export function modelAtThresholdView(m) {
  if (!m || !m.curves || !m.curves.length) return "";
  return html`<div class="model-at-threshold">
    <p>The model at people's threshold (<strong class="people-threshold">${eps(m.threshold_255, m.threshold_beyond)}</strong>;
      95% interval ${eps(m.threshold_ci_low, m.threshold_ci_low_beyond)} – ${eps(m.threshold_ci_high, m.threshold_ci_high_beyond)}):
      robust accuracy read off the model's curve, ${m.interpolation}.</p>
    <table class="data threshold-accuracy"><thead><tr><th>attack (images)</th><th class="num">robust accuracy at the threshold</th>
      <th>95% interval (from the threshold's)</th></tr></thead>
    <tbody>${m.curves.map((c) => html`<tr data-attack="${c.attack}"><td>${c.label}</td>
      <td class="num"><strong>${acc(c.accuracy, c.accuracy_beyond, c)}</strong></td>
      <td>${acc(c.ci_low, c.ci_low_beyond, c)} – ${acc(c.ci_high, c.ci_high_beyond, c)}</td></tr>`)}</tbody></table>
    <p class="muted small">The interval carries the threshold's interval through the curve; it leaves out
      which images the model was attacked on (their number is beside each attack).</p>
  </div>`;
}

/** The run page: the run's accuracy at people's threshold from each detection study. */
export async function drawModelAtThreshold(el, runId) {
  if (!el) return;
  let res;
  try { res = await api(`/api/runs/${runId}/results`); } catch { return; }
  const rows = res.accuracy_at_threshold || [];
  if (!el.isConnected || !rows.length) return;
  render(el, html`<h3>Robust accuracy at people's detection threshold</h3>
    ${rows.map((r) => html`<div class="study-threshold" data-study="${String(r.study_id)}">
      <p><a href="#/studies/${String(r.study_id)}">${r.study_name}</a>
        <span class="muted">(${r.design}, ${plural(r.participants ?? 0, "participant")} included)</span></p>
      ${modelAtThresholdView(r)}</div>`)}`);
}
