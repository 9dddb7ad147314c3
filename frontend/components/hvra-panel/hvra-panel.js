// A run's human-validated robust accuracy from its label studies (issue 26), shown on the run
// page beside AutoAttack: per study and epsilon, AutoAttack's robust accuracy on the study's
// images and the human-validated figure with its 95% participant-bootstrap interval
// (GET /api/runs/<id>/results, key human_validated_robust_accuracy). Nothing is drawn when no
// label study covers the run.
// Usage: drawHvra(element, runId).

import { api } from "../../lib/api.js";
import { percent as pct } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";

export async function drawHvra(el, runId) {
  if (!el) return;
  let res;
  try { res = await api(`/api/runs/${runId}/results`); } catch { return; }
  const rows = res.human_validated_robust_accuracy || [];
  if (!el.isConnected || !rows.length) return;
  render(el, html`<h3>Human-validated robust accuracy</h3>
    <p class="muted small">From label studies: fooled images on which people no longer name the true class are not counted as model errors (docs/studies.md, "Label studies").</p>
    <table class="data hvra-table"><thead><tr><th>Study</th><th class="num">ε /255</th><th class="num">images</th><th class="num">people</th>
      <th class="num">AutoAttack</th><th class="num">human-validated</th><th>95% CI</th></tr></thead>
    <tbody>${rows.map((r) => html`<tr><td><a href="#/studies/${String(r.study_id)}">${r.study_name}</a></td><td class="num">${String(r.epsilon_255)}</td>
      <td class="num">${String(r.n_images)}</td><td class="num">${String(r.participants)}</td><td class="num">${pct(r.autoattack_robust_accuracy)}</td>
      <td class="num"><strong>${pct(r.value)}</strong></td><td>${r.ci ? `${pct(r.ci[0])} – ${pct(r.ci[1])}` : "–"}</td></tr>`)}</tbody></table>`);
}
