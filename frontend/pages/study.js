// One study (#/studies/<id>): state, stimulus generation progress, participant link, open/close,
// and the results: human detection per epsilon (with 95% intervals and the fitted curve) drawn
// beside each run's robust accuracy on the same epsilon axis; exclusions; CSV export. Once
// stimuli exist, a preview: per run, the first few main images at every epsilon of the grid, at
// their native pixel size, with the L-inf distance to the source measured by the server.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { number as num, percent as pct, round } from "../lib/format.js";
import { html, raw, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { loadStudyCss } from "./studies.js";

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
    (r.robust_accuracy || []).forEach((p) => all.add(p.epsilon_255));
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
      parts.push(`<circle cx="${sx(p.epsilon_255)}" cy="${sy(rate(p))}" r="4" fill="${c}"><title>${p.n} trials</title></circle>`);
    }
    if (r.robust_accuracy && r.robust_accuracy.length) {
      const pts = r.robust_accuracy.map((p) => `${sx(p.epsilon_255).toFixed(1)},${sy(p.accuracy).toFixed(1)}`);
      parts.push(`<polyline fill="none" stroke="${c}" stroke-width="2" stroke-dasharray="7 4" points="${pts.join(" ")}"/>`);
      r.robust_accuracy.forEach((p) => parts.push(`<rect x="${sx(p.epsilon_255) - 3}" y="${sy(p.accuracy) - 3}" width="6" height="6" fill="#fff" stroke="${c}"/>`));
    }
  });
  // every value above is a number computed here; no user text goes into this markup
  return raw(`<svg class="study-plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"
    aria-label="Human detection and model robust accuracy per epsilon">${parts.join("")}</svg>`);
}

function resultsView(res) {
  const is2afc = res.design === "2afc";
  return html`
    <p>${res.participants.total} participants, ${res.participants.completed} completed, ${res.participants.included} included in the analysis.</p>
    <div class="legend">${res.runs.map((r, i) => html`<span><i style="background:${COLORS[i % COLORS.length]}"></i>${r.run_name} (${r.method})</span>`)}
      <span>solid: people ${is2afc ? "(percent correct, chance 50%)" : "(hit rate)"} · dashed: model robust accuracy${res.runs.some((r) => !r.robust_accuracy) ? " (not recorded for some runs)" : ""}</span></div>
    ${plot(res)}
    ${res.runs.map((r) => html`
      <h3>${r.run_name}</h3>
      <p>Threshold (${is2afc ? "75% correct" : "halfway between false alarms and the upper asymptote"}):
        <strong>${r.fit && r.fit.threshold_255 !== null ? num(r.fit.threshold_255) + " /255" : "not reached"}</strong>
        ${r.fit ? html`(95% bootstrap interval ${num(r.fit.threshold_ci_low)} – ${r.fit.threshold_ci_high === null ? "above the grid" : num(r.fit.threshold_ci_high)}, ${r.fit.n_boot} resamples of participants)` : ""}</p>
      <table class="data"><thead><tr><th class="num">eps /255</th><th class="num">trials</th>
        ${is2afc ? html`<th class="num">correct</th><th>95% CI</th>` : html`<th class="num">hit rate</th><th>95% CI</th><th class="num">false alarms</th><th class="num">d′</th><th>95% CI</th>`}
        <th class="num">model robust acc.</th></tr></thead>
      <tbody>${r.points.map((p) => {
        const ra = (r.robust_accuracy || []).find((q) => Math.abs(q.epsilon_255 - p.epsilon_255) < 1e-3);
        return html`<tr><td class="num">${p.epsilon_255}</td><td class="num">${p.n}</td>
          ${is2afc ? html`<td class="num">${pct(p.percent_correct)}</td><td>${pct(p.ci_low)} – ${pct(p.ci_high)}</td>`
            : html`<td class="num">${pct(p.hit_rate)}</td><td>${pct(p.ci_low)} – ${pct(p.ci_high)}</td><td class="num">${pct(p.false_alarm_rate)}</td>
              <td class="num">${num(p.d_prime)}</td><td>${num(p.d_prime_ci_low)} – ${num(p.d_prime_ci_high)}</td>`}
          <td class="num">${ra ? pct(ra.accuracy) : "–"}</td></tr>`;
      })}</tbody></table>`)}
    <h3>Excluded participants</h3>
    ${res.excluded.length ? html`<table class="data"><thead><tr><th>Participant</th><th>Reason</th></tr></thead>
      <tbody>${res.excluded.map((e) => html`<tr><td>${e.participant}</td><td>${e.reason}</td></tr>`)}</tbody></table>`
      : html`<p class="muted">None.</p>`}`;
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

function stimulusCell(st) {
  if (!st) return html`<td class="missing muted">–</td>`;
  const over = st.linf_255 !== null && st.linf_255 > st.epsilon_255 + 1e-6;
  const size = st.width ? html` width="${st.width}" height="${st.height}"` : "";
  return html`<td class="${over ? "over-budget" : ""}" data-stimulus="${st.id}">
    <img src="${st.image_url}"${size} alt="source image ${st.source_image_id} at epsilon ${st.epsilon_255}/255" loading="lazy">
    <div class="eps">ε ${epsText(st.epsilon_255)}/255</div>
    <div class="linf">L∞ ${st.linf_255 === null ? "?" : st.linf_255}${over ? " over budget" : ""}</div></td>`;
}

function runPreview(runId, items, grid) {
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
      ${grid.map((e) => stimulusCell(list.find((st) => sameEps(st.epsilon_255, e))))}</tr>`)}</tbody></table>`;
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
    ${s.config.run_ids.map((rid, i) => runPreview(rid, pages[i].data, grid))}`);
}

export async function mount(root, ctx) {
  loadStudyCss();
  const id = ctx.params[0];
  let stopPolling = () => {};

  /** Fetch and draw the study; true while its stimuli are being made (then it is polled). */
  async function load() {
    const s = await api(`/api/studies/${id}`);
    const link = `${location.origin}${s.link_path}?PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}`;
    render(root, html`<section class="page study-detail">
      <p><a href="#/studies">← Studies</a></p>
      <h1>${s.name}</h1>
      <p>Design <strong>${s.design}</strong> · state <span class="badge state-${s.state}">${s.state}</span> ·
        ${s.num_stimuli} stimuli · ${s.num_sessions} participants (${s.num_completed} completed)</p>
      ${s.state === "generating" ? html`<p>Making stimuli… <progress max="1" value="${s.progress}"></progress> ${pct(s.progress)}</p>` : ""}
      ${s.error ? html`<p class="form-error" role="alert">${s.error}</p>` : ""}
      <div class="actions">
        ${["draft", "failed"].includes(s.state) ? html`<button class="primary" data-act="generate">Make stimuli</button>` : ""}
        ${["ready", "closed"].includes(s.state) ? html`<button class="primary" data-act="open">Open to participants</button>` : ""}
        ${s.state === "open" ? html`<button data-act="close">Close</button>` : ""}
        <a href="/api/studies/${s.id}/trials.csv" download>Download trials (CSV)</a>
      </div>
      <p>Participant link (Prolific fills in the ids): <span class="participant-link">${link}</span></p>
      <p class="muted">Epsilons ${s.config.epsilons_255.join(", ")} /255 · ${s.config.trials_per_condition} trials per condition ·
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
    const preview = root.querySelector(".study-stimuli");
    if (preview) {
      loadPreview(preview, s).catch((err) => render(preview, html`<h2>Stimuli</h2><p class="form-error" role="alert">${err.message}</p>`));
    }
    const box = root.querySelector(".study-results");
    if (s.num_sessions) {
      const res = await api(`/api/studies/${id}/results`);
      render(box, html`<h2>Results</h2>${resultsView(res)}`);
    } else {
      render(box, html`<h2>Results</h2><p class="muted">No participants yet.</p>`);
    }
    return s.state === "generating";
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
  return () => stopPolling();
}
