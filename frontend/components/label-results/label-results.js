// A label study's results (issue 26) on the study page: human accuracy on clean images, and per
// run and epsilon the model's outcomes on the pool, human accuracy on the adversarial images,
// the share of the model's adversarial errors on which people still name the true class, and
// the human-validated robust accuracy beside AutoAttack's robust accuracy, each with its 95%
// interval over participants (docs/studies.md, "Label studies").
// Usage: render(box, labelResultsView(results, analysisStateMarkup)).

import { percent as pct, plural } from "../../lib/format.js";
import { html } from "../../lib/html.js";

function ci(range, why = "no answers") {
  return range ? `${pct(range[0])} – ${pct(range[1])}` : html`<span class="muted">${why}</span>`;
}

// a figure over the adversarial images, or why there is none (the attack fooled none)
function adv(p, value) {
  if (value !== null && value !== undefined) return pct(value);
  return html`<span class="muted">${p.model.fooled ? "no answers" : "none fooled"}</span>`;
}

export function labelResultsView(res, stateMarkup = "") {
  const included = res.participants.included === null || res.participants.included === undefined ? "not yet analysed" : res.participants.included;
  const runs = res.runs || [];
  return html`${stateMarkup}
    <p>${plural(res.participants.total, "participant")}, ${res.participants.completed} completed, ${included} included in the analysis.</p>
    <p class="label-clean">People on the clean images: <strong>${res.human_accuracy_clean === null || res.human_accuracy_clean === undefined ? "no answers yet" : pct(res.human_accuracy_clean)}</strong>
      ${res.human_accuracy_clean_ci ? html`<span class="muted">(95% CI ${ci(res.human_accuracy_clean_ci)}, ${plural(res.clean_trials, "trial")})</span>` : ""}</p>
    <p class="muted small">Human-validated robust accuracy = (images the model gets right and keeps right under AutoAttack + images the attack fooled the model on but on which people no longer name the true class) / images attacked. Clean errors, and images that no longer fool the model once quantised to 8 bits, stay errors. Intervals: ${res.interval || "participant bootstrap"}.</p>
    ${runs.map((r) => html`<h3>${r.run_name}</h3>
      <table class="data label-results" data-run="${r.run_id}"><thead><tr><th class="num">eps /255</th><th class="num">images</th>
        <th class="num">model wrong clean</th><th class="num">robust</th><th class="num">fooled</th><th class="num">dropped (8-bit)</th>
        <th class="num">trials</th><th class="num">people right on adversarial</th><th>95% CI</th>
        <th class="num">model errors people still name</th><th>95% CI</th>
        <th class="num">AutoAttack robust accuracy</th><th class="num">human-validated robust accuracy</th><th>95% CI</th></tr></thead>
      <tbody>${r.points.map((p) => html`<tr data-eps="${String(p.epsilon_255)}"><td class="num">${String(p.epsilon_255)}</td><td class="num">${String(p.n_images)}</td>
        <td class="num">${String(p.model.wrong)}</td><td class="num">${String(p.model.robust)}</td><td class="num">${String(p.model.fooled)}</td><td class="num">${String(p.model.dropped)}</td>
        <td class="num">${String(p.adversarial_trials)}</td><td class="num">${adv(p, p.human_accuracy_adversarial)}</td><td>${ci(p.human_accuracy_adversarial_ci, p.model.fooled ? "no answers" : "none fooled")}</td>
        <td class="num">${adv(p, p.model_errors_people_right)}</td><td>${ci(p.model_errors_people_right_ci, p.model.fooled ? "no answers" : "none fooled")}</td>
        <td class="num">${pct(p.model_robust_accuracy)}</td><td class="num hvra"><strong>${pct(p.human_validated_robust_accuracy)}</strong></td><td>${ci(p.human_validated_robust_accuracy_ci)}</td></tr>`)}</tbody></table>`)}
    <h3>Excluded participants</h3>
    ${(res.excluded || []).length ? html`<table class="data"><thead><tr><th>Session</th><th>Reason</th></tr></thead>
      <tbody>${res.excluded.map((e) => html`<tr><td>${String(e.participant || e.session_id)}</td><td>${e.reason}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">None.</p>`}`;
}
