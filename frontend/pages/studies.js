// Researcher's study list and the form to design a new study (#/studies).
// Usage: routed by app.js; exports mount(root, ctx). Detail and results: pages/study.js.

import { api } from "../lib/api.js";
import { date } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { linkStylesheet } from "../lib/styles.js";

function numbers(text) {
  return text.split(/[\s,]+/).filter(Boolean).map(Number);
}

export async function mount(root, ctx) {
  linkStylesheet(new URL("./studies.css", import.meta.url));
  render(root, html`
    <section class="page studies">
      <h1>Studies</h1>
      <table class="data">
        <thead><tr><th>Name</th><th>Design</th><th>State</th><th class="num">Runs</th>
          <th class="num">Participants</th><th class="num">Completed</th><th>Created</th></tr></thead>
        <tbody><tr><td colspan="7" class="muted">Loading…</td></tr></tbody>
      </table>
      <h2>New study</h2>
      <form class="study-form" novalidate>
        <label>Name <input name="name" required maxlength="200"></label>
        <fieldset><legend>Source runs (finished, one dataset)</legend><div class="runs muted">Loading…</div></fieldset>
        <label>Design <select name="design"><option value="2afc">Two images: which one was changed? (2AFC)</option>
          <option value="yesno">One image: was it changed? (yes/no, half clean)</option>
          <option value="label">One image: what does it show? (label; AutoAttack images, human-validated robust accuracy)</option></select></label>
        <label>Images per class (label studies) <input name="images_per_class" type="number" min="1" value="5"></label>
        <label>Random test images <input name="num_random_images" type="number" min="1" value="40"></label>
        <label>or these image ids <input name="image_ids" placeholder="e.g. 12, 15, 19"></label>
        <label>Epsilon grid (grey levels, /255) <input name="epsilons_255" value="1, 2, 4, 8, 16"></label>
        <label>Placement (2AFC) <select name="placement"><option value="constant">Constant stimuli: the grid, each cell equally often</option>
          <option value="quest">QUEST+: each next epsilon chosen from the answers so far (a 25-level ladder)</option></select></label>
        <label>QUEST+ ladder (/255, from – to) <input name="quest_ladder" value="0.5, 24"></label>
        <label>QUEST+ trials per run <input name="quest_max_trials" type="number" min="2" value="40"></label>
        <label>QUEST+ stop when the interval spans at most (× , optional) <input name="quest_stop_ci_ratio" type="number" step="0.1" min="1.1" placeholder="no early stop"></label>
        <label>PGD steps <input name="steps" type="number" min="1" value="20"></label>
        <label>Step size (× eps) <input name="alpha_ratio" type="number" step="0.05" min="0.01" value="0.25"></label>
        <label>Trials per condition <input name="trials_per_condition" type="number" min="1" value="2"></label>
        <label>Catch trials <input name="catch_trials" type="number" min="0" value="2"></label>
        <label>Catch epsilon (/255) <input name="catch_epsilon_255" type="number" min="1" value="32"></label>
        <label>Practice trials <input name="practice_trials" type="number" min="0" value="2"></label>
        <label>Minimum catch accuracy <input name="min_catch_accuracy" type="number" step="0.05" min="0" max="1" value="0.75"></label>
        <label>Too fast (ms) <input name="too_fast_ms" type="number" min="0" value="200"></label>
        <label>Completion URL (with {code}) <input name="completion_url" placeholder="https://app.prolific.com/submissions/complete?cc={code}"></label>
        <label>Completion code (Prolific's, optional) <input name="completion_code"></label>
        <label>Seed <input name="seed" type="number" min="0" value="0"></label>
        <label class="wide">Consent text <textarea name="consent" rows="3" placeholder="(default text)"></textarea></label>
        <label class="wide">Instructions <textarea name="instructions" rows="3" placeholder="(default text)"></textarea></label>
        <label class="wide">Debrief <textarea name="debrief" rows="3" placeholder="(default text)"></textarea></label>
        <p class="form-error" role="alert" hidden></p>
        <p><button type="submit" class="primary">Create study</button></p>
      </form>
    </section>`);
  const tbody = root.querySelector("tbody");
  const form = root.querySelector("form");
  const errorEl = form.querySelector(".form-error");

  const [studies, runs] = await Promise.all([api("/api/studies"), api("/api/studies/source-runs")]);
  render(tbody, studies.data.length ? html`${studies.data.map((s) => html`<tr>
      <td><a href="#/studies/${s.id}">${s.name}</a></td><td>${s.design}</td>
      <td><span class="badge state-${s.state}">${s.state}</span></td><td class="num">${s.run_ids.length}</td>
      <td class="num">${s.num_sessions}</td><td class="num">${s.num_completed}</td>
      <td>${date(s.created_at)}</td></tr>`)}`
    : html`<tr><td colspan="7" class="muted">No studies yet.</td></tr>`);
  render(form.querySelector(".runs"), runs.data.length ? html`${runs.data.map((r) => html`
      <label class="check"><input type="checkbox" name="run" value="${r.id}"> ${r.name} · ${r.method} · ${r.dataset_name}</label>`)}`
    : html`No finished runs yet: train one first.`);

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const f = new FormData(form);
    const texts = {};
    for (const k of ["consent", "instructions", "debrief"]) if (f.get(k).trim()) texts[k] = f.get(k);
    const ids = f.get("image_ids").trim();
    const label = f.get("design") === "label";
    const body = {
      name: f.get("name"), design: f.get("design"),
      run_ids: f.getAll("run").map(Number),
      image_ids: ids ? numbers(ids) : null,
      num_random_images: ids ? null : Number(f.get("num_random_images")),
      epsilons_255: numbers(f.get("epsilons_255")),
      attack: { steps: Number(f.get("steps")), alpha_ratio: Number(f.get("alpha_ratio")) },
      trials_per_condition: Number(f.get("trials_per_condition")),
      catch_trials: Number(f.get("catch_trials")), catch_epsilon_255: Number(f.get("catch_epsilon_255")),
      practice_trials: Number(f.get("practice_trials")),
      exclusion: { min_catch_accuracy: Number(f.get("min_catch_accuracy")), too_fast_ms: Number(f.get("too_fast_ms")) },
      completion_url: f.get("completion_url").trim() || null,
      completion_code: f.get("completion_code").trim() || null,
      seed: Number(f.get("seed")), texts,
    };
    if (f.get("placement") === "quest" && !label) {
      const [lo, hi] = numbers(f.get("quest_ladder"));
      const ratio = f.get("quest_stop_ci_ratio").trim();
      body.placement = "quest";
      body.quest = { ladder_min_255: lo, ladder_max_255: hi, max_trials: Number(f.get("quest_max_trials")),
        stop_ci_ratio: ratio ? Number(ratio) : null };
    }
    if (label) Object.assign(body, { images_per_class: Number(f.get("images_per_class")), image_ids: null, num_random_images: null });
    errorEl.hidden = true;
    form.querySelectorAll(".invalid").forEach((el) => el.classList.remove("invalid"));
    try {
      const study = await api("/api/studies", { method: "POST", body });
      ctx.navigate(`#/studies/${study.id}`);
    } catch (err) {
      errorEl.textContent = err.message;
      errorEl.hidden = false;
      for (const fe of (err.body && err.body.errors) || []) {
        const name = String(fe.field).split(".").pop();
        const el = form.querySelector(`[name="${CSS.escape(name)}"]`) || (name === "run_ids" && form.querySelector(".runs"));
        if (el) el.classList.add("invalid");
      }
    }
  });
}
