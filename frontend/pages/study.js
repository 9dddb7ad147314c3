// One study (#/studies/<id>): state, stimulus generation progress, the participant link (copy
// button, Prolific's placeholders explained, "preview as participant"), open/close,
// and the results: human detection per epsilon (with 95% intervals and the fitted curve) drawn
// beside each run's robust accuracy on the same epsilon axis; exclusions; CSV export. Once
// stimuli exist, a preview: per run, the first few main images at every epsilon of the grid, at
// their native pixel size, with the L-inf distance to the source measured by the server.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { number as num, percent as pct, plural, round } from "../lib/format.js";
import { html, raw, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { linkStylesheet } from "../lib/styles.js";

/** The model's curve drawn beside people's: its robust accuracy at the study's own epsilons
 * (measured when the stimuli were made), else, for older studies, the run's evaluation. */
function modelCurve(r) {
  if (r.model_accuracy && r.model_accuracy.points.length) return r.model_accuracy.points;
  return r.robust_accuracy || [];
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
  });
  // every value above is a number computed here; no user text goes into this markup
  return raw(`<svg class="study-plot" viewBox="0 0 ${W} ${H}" width="${W}" height="${H}" role="img"
    aria-label="Human detection and model robust accuracy per epsilon">${parts.join("")}</svg>`);
}

function modelHeader(r) {
  return r.model_accuracy
    ? html`model robust acc.<br><span class="muted small">${modelMethod(r.model_accuracy)}</span>`
    : html`model robust acc.<br><span class="muted small">run's evaluation</span>`;
}

function intervalText(f) {
  if (!f.n_boot) return "no interval: it needs at least two participants";
  return `95% bootstrap interval ${thresholdText(f.threshold_ci_low, f.threshold_ci_low_beyond)} – ${thresholdText(f.threshold_ci_high, f.threshold_ci_high_beyond)}, ${f.n_boot} resamples of participants`;
}

function resultsView(res) {
  const is2afc = res.design === "2afc";
  const older = res.runs.some((r) => !r.model_accuracy);
  return html`
    <p>${plural(res.participants.total, "participant")}, ${res.participants.completed} completed, ${res.participants.included} included in the analysis.</p>
    <div class="legend">${res.runs.map((r, i) => html`<span><i style="background:${COLORS[i % COLORS.length]}"></i>${r.run_name} (${r.method})</span>`)}
      <span>solid: people ${is2afc ? "(percent correct, chance 50%)" : "(hit rate)"} · dashed: model robust accuracy at the study's epsilons${older ? " (older study: the runs' own evaluation where recorded)" : ""}</span></div>
    ${plot(res)}
    ${res.runs.map((r) => html`
      <h3>${r.run_name}</h3>
      <p class="threshold">Threshold (${is2afc ? "75% correct" : "halfway between false alarms and the upper asymptote"}):
        <strong>${r.fit ? thresholdText(r.fit.threshold_255, r.fit.threshold_beyond) : "no fit yet"}</strong>
        ${r.fit ? html`(${intervalText(r.fit)})` : ""}</p>
      <table class="data results-table" data-run="${r.run_id}"><thead><tr><th class="num">eps /255</th><th class="num">trials</th>
        ${is2afc ? html`<th class="num">correct</th><th>95% CI</th>` : html`<th class="num">hit rate</th><th>95% CI</th><th class="num">false alarms</th><th class="num">d′</th><th>95% CI</th>`}
        <th class="num">${modelHeader(r)}</th></tr></thead>
      <tbody>${r.points.map((p) => {
        const ra = modelCurve(r).find((q) => Math.abs(q.epsilon_255 - p.epsilon_255) < 1e-3);
        return html`<tr><td class="num">${p.epsilon_255}</td><td class="num">${p.n}</td>
          ${is2afc ? html`<td class="num">${pct(p.percent_correct)}</td><td>${pct(p.ci_low)} – ${pct(p.ci_high)}</td>`
            : html`<td class="num">${pct(p.hit_rate)}</td><td>${pct(p.ci_low)} – ${pct(p.ci_high)}</td><td class="num">${pct(p.false_alarm_rate)}</td>
              <td class="num">${num(p.d_prime)}</td><td>${num(p.d_prime_ci_low)} – ${num(p.d_prime_ci_high)}</td>`}
          <td class="num model-acc">${ra ? pct(ra.accuracy) : "not measured"}</td></tr>`;
      })}</tbody></table>`)}
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
      ${s.state === "generating" ? html`<p>Making stimuli… <progress max="1" value="${s.progress}"></progress> ${pct(s.progress)}</p>` : ""}
      ${s.error ? html`<p class="form-error" role="alert">${s.error}</p>` : ""}
      <div class="actions">
        ${["draft", "failed"].includes(s.state) ? html`<button class="primary" data-act="generate">Make stimuli</button>` : ""}
        ${["ready", "closed"].includes(s.state) ? html`<button class="primary" data-act="open">Open to participants</button>` : ""}
        ${s.state === "open" ? html`<button data-act="close">Close</button>` : ""}
        <a href="/api/studies/${s.id}/trials.csv" download>Download trials (CSV)</a>
      </div>
      ${linkBox(s)}
      <p class="muted">Epsilons ${s.config.epsilons_255.join(", ")} /255 · ${plural(s.config.trials_per_condition, "trial")} per condition ·
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
