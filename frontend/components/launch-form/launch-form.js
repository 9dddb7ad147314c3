// The form that launches a training run, built from the settings the API describes (GET
// /api/runs/defaults, from the runconfig package; lib/run-settings.js): one fieldset per section,
// each setting as its type asks (a select for a fixed set, a checkbox for a switch, a number,
// a list), budgets entered in grey levels /255 and sent in pixel units, a setting shown only for
// the methods (and while the setting it depends on holds the values) it applies to, the app
// objects it names (a mask set, a finished run) as selects filled from the API, and the
// server's refusals beside their fields. It keeps no list of settings of its own.
// Usage: import { openLaunchForm } from "../components/launch-form/launch-form.js";
//   await openLaunchForm(container, { datasets, cloneId, onLaunched: (runs) => ..., onError: (message) => ... });
// Another form built on these fields (components/sweep-form) passes `title`, `formClass`, `what`
// (the noun of its refusal sentence), `extra` (markup put first in the form, with its own
// .field-error slots, found before the fields' own) and `submit(body)` (resolves to what
// onLaunched gets; an ApiError's refusals go beside the fields), and uses the handle it
// resolves to: { form, readForm({ live }), showErrors(ex, { live }), clearErrors() }; live: no
// focus moved and no summary sentence, for checks made while the form is filled in.

import { api, ApiError } from "../../lib/api.js";
import { plural, round } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { applies, labelOf, loadRunSettings, sectionsInOrder, whenHolds } from "../../lib/run-settings.js";

// How each app object the form names is offered: its choices, from what fillChoices loaded.
const REF_OPTIONS = {
  mask_set_id: ({ sets }) => sets.map((s) => [s.id, `${s.name} (${plural(s.num_images, "image")}, ${s.hash.slice(0, 8)})`]),
  auto_mask_run_id: ({ done }) => done.map((r) => [r.id, `#${r.id} ${r.name}`]),
  igd_teacher_run_id: ({ done }) => done.filter((r) => r.method === "standard").map((r) => [r.id, `#${r.id} ${r.name}`]),
};

const isNumber = (item) => /^(int|float)\b/.test(item.type);
const isList = (item) => item.type.startsWith("list[");
const fromBudget = (item, x) => (item.budget ? x / 255 : x);
const toBudget = (item, x) => (item.budget ? round(x * 255, 3) : x);

/** Open the launch form in `container` (the defaults, or a clone of run `cloneId`). */
export async function openLaunchForm(container, {
  datasets, cloneId = null, onLaunched, onError = () => {},
  title = "New run", formClass = "", what = "run", extra = "", submit = null, submitLabel = "Launch",
}) {
  const settings = await loadRunSettings();
  const defaults = Object.fromEntries(settings.fields.map((f) => [f.name, f.default]));
  let values = { ...defaults, ...settings.defaults, dataset_id: datasets[0] ? datasets[0].id : "" };
  let clonedFrom = null;
  if (cloneId) {
    try {
      const c = await api(`/api/runs/${cloneId}/clone`);
      values = { ...values, ...Object.fromEntries(Object.entries(c.form).filter(([, v]) => v !== null)) };
      clonedFrom = c.cloned_from_id;
    } catch (err) {
      onError(err.message);
    }
  }
  const method = settings.method_setting;
  const v = (k) => (values[k] === undefined || values[k] === null ? "" : values[k]);
  const err = (...names) => html`<span class="field-error" data-for="${names.join(" ")}"></span>`;

  function control(item) {
    const name = item.name;
    const attrs = html`data-item="${name}"`;
    const label = html`<span class="${name}-label">${item.form_label}${item.per_run ? "(s)" : ""}</span>`;
    if (settings.refs.includes(item)) {
      return html`<label ${attrs}>${label}<select name="${name}"><option value="">—</option></select>${err(name)}</label>`;
    }
    if (item.per_run) {
      const seeds = values.seeds && values.seeds.length ? values.seeds.join(", ") : v(name);
      return html`<label ${attrs}>${label}<input type="text" name="seeds" value="${seeds}" placeholder="0 or 0, 1, 2">${err(name, "seeds")}</label>`;
    }
    if (item.type === "bool") {
      return html`<label class="inline" ${attrs}><input type="checkbox" name="${name}" ${values[name] ? "checked" : ""}> ${label}</label>`;
    }
    if (item.choices && !isNumber(item)) {
      const chosen = v(name) === "" ? item.default : values[name];
      return html`<label ${attrs}>${label}<select name="${name}">${item.choices.map((k) => html`<option value="${k}" ${k === chosen ? "selected" : ""}>${item.choice_labels[k] || k}</option>`)}</select>${err(name)}</label>`;
    }
    if (isList(item)) {
      return html`<label ${attrs}>${label}<input type="text" name="${name}" value="${(values[name] || []).map((x) => toBudget(item, x)).join(", ")}">${err(name)}</label>`;
    }
    const low = item.choices ? Math.min(...item.choices) : item.minimum;
    const high = item.choices ? Math.max(...item.choices) : item.maximum;
    const bound = (b, x) => (x === null || x === undefined ? "" : html`${b}="${toBudget(item, x)}"`);
    return html`<label ${attrs}>${label}<input type="number" name="${name}" value="${v(name) === "" ? "" : toBudget(item, values[name])}" step="any" ${bound("min", low)} ${bound("max", high)}>${err(name)}</label>`;
  }

  render(container, html`
    <form class="card launch-form ${formClass}" novalidate aria-label="${`Launch a training ${what}`}">
      <h2>${clonedFrom ? `${title} (clone of run ${clonedFrom})` : title}</h2>
      ${extra}
      ${sectionsInOrder().map(({ section, items }, i) => html`<fieldset data-section="${section.key}"><legend>${section.legend}</legend><div class="fields">
        ${i === 0 ? html`<label>Name<input type="text" name="name" value="${v("name")}" maxlength="200" placeholder="optional">${err("name")}</label>
          <label>Dataset<select name="dataset_id">${datasets.map((d) => html`<option value="${d.id}" ${String(d.id) === String(values.dataset_id) ? "selected" : ""}>${d.name}</option>`)}</select>${err("dataset_id")}</label>` : ""}
        ${items.map(control)}
        ${i === 0 ? html`<label>Tags<input type="text" name="tags" value="${(values.tags || []).join(", ")}" placeholder="comma separated">${err("tags")}</label>` : ""}
        ${section.notes.map((note) => html`<p class="muted">${note}</p>`)}
      </div></fieldset>`)}
      <p class="form-error launch-error" role="alert"></p>
      <div class="row end"><button type="button" class="cancel-form">Close</button>
        <button type="submit" class="primary launch-btn">${submitLabel}</button></div>
    </form>`);
  const form = container.querySelector(".launch-form");
  const items = sectionsInOrder().flatMap((s) => s.items);

  /** A setting's value as the form holds it now (for what applies). */
  const current = (name) => {
    const el = form.elements[name];
    if (!el) return undefined;
    if (el.type === "checkbox") return el.checked;
    if (el.type === "number") return el.value.trim() === "" ? null : Number(el.value);
    return el.value;
  };

  /** Show what applies to the chosen method (and to the settings it depends on). */
  const sync = () => {
    const chosen = current(method);
    for (const item of items) {
      const el = form.querySelector(`[data-item="${item.name}"]`);
      el.hidden = !applies(item, current);
      form.querySelector(`.${item.name}-label`).textContent = labelOf(item, chosen, "form_label") + (item.per_run ? "(s)" : "");
    }
    for (const fs of form.querySelectorAll("fieldset[data-section]")) {
      fs.hidden = !fs.querySelector("[data-item]:not([hidden]), label:not([data-item])");
    }
  };

  /** Offer the chosen dataset's mask sets and finished runs. Only the latest call draws (a
   * slower answer for the dataset chosen before would put back its choices), and a choice the
   * user has made already stays chosen while it is still offered. */
  let choicesAsked = 0;
  async function fillChoices() {
    const asked = ++choicesAsked;
    const dsId = form.elements.dataset_id.value;
    const sets = await api(`/api/datasets/${dsId}/mask-sets`).catch(() => ({ data: [] }));
    const done = await api(`/api/runs?state=succeeded&dataset_id=${dsId}`).catch(() => ({ data: [] }));
    if (asked !== choicesAsked) return;
    for (const ref of settings.refs) {
      const select = form.elements[ref.name];
      const options = (REF_OPTIONS[ref.name] || (() => []))({ sets: sets.data, done: done.data });
      const chosen = select.value || String(values[ref.name] ?? "");
      render(select, html`<option value="">—</option>${options.map(([id, text]) => html`<option value="${id}" ${String(id) === chosen ? "selected" : ""}>${text}</option>`)}`);
    }
  }

  /** The form as the API's RunCreate body; marks local parse errors and returns null on one. */
  function readForm({ live = false } = {}) {
    const el = form.elements;
    const body = { name: el.name.value.trim(), dataset_id: Number(el.dataset_id.value) };
    body.tags = el.tags.value.split(",").map((t) => t.trim()).filter(Boolean);
    const local = [];
    for (const item of settings.fields) {
      if (item.per_run) {
        const seeds = el.seeds.value.split(/[\s,]+/).filter(Boolean).map(Number);
        if (seeds.some((s) => !Number.isInteger(s))) local.push({ field: "seeds", message: "seeds are whole numbers" });
        else if (seeds.length === 1) body[item.name] = seeds[0];
        else if (seeds.length > 1) body.seeds = seeds;
        continue;
      }
      if (!applies({ ...item, when: null }, current)) continue; // not this method's
      const holds = whenHolds(item, current);
      if (item.type === "bool") {
        body[item.name] = holds && el[item.name].checked; // a switch that depends on another is off without it
        continue;
      }
      if (!holds) continue;
      const raw = el[item.name].value.trim();
      if (item.choices && !isNumber(item)) {
        body[item.name] = raw;
      } else if (isList(item)) {
        const list = raw.split(/[\s,]+/).filter(Boolean).map(Number);
        if (list.some((x) => !Number.isFinite(x))) local.push({ field: item.name, message: item.budget ? "a list of numbers (/255)" : "a list of numbers" });
        else if (list.length) body[item.name] = list.map((x) => fromBudget(item, x));
      } else if (raw !== "") {
        const n = Number(raw);
        if (!Number.isFinite(n)) local.push({ field: item.name, message: "must be a number" });
        else body[item.name] = fromBudget(item, n);
      }
    }
    for (const ref of settings.refs) {
      if (applies(ref, current) && el[ref.name].value) body[ref.name] = Number(el[ref.name].value);
    }
    if (local.length) {
      showErrors(new ApiError(422, "Check the marked fields.", { errors: local }), { live });
      return null;
    }
    return body;
  }

  function showErrors(ex, { live = false } = {}) {
    const errors = (ex.body && Array.isArray(ex.body.errors)) ? ex.body.errors : [];
    let shownAll = errors.length > 0;
    for (const { field, message } of errors) {
      const slot = [...form.querySelectorAll(".field-error")].find((s) => s.dataset.for.split(" ").includes(field));
      if (!slot) { shownAll = false; continue; }
      slot.textContent = message;
      const input = slot.parentElement.querySelector("input, select");
      if (input) input.classList.add("invalid");
    }
    if (live) return;
    form.querySelector(".launch-error").textContent = shownAll ? `The ${what} was not launched: fix the marked fields.` : ex.message;
    const first = form.querySelector(".invalid");
    if (first) first.focus();
  }

  function clearErrors() {
    for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
    for (const el of form.querySelectorAll(".invalid")) el.classList.remove("invalid");
    form.querySelector(".launch-error").textContent = "";
  }

  form.addEventListener("change", (e) => {
    if (e.target.name === "dataset_id") fillChoices();
    sync();
  });
  form.addEventListener("input", sync);
  sync();
  fillChoices();
  form.querySelector(".cancel-form").addEventListener("click", () => { render(container, html``); });
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    clearErrors();
    const body = readForm();
    if (body === null) return;
    const btn = form.querySelector(".launch-btn");
    btn.disabled = true;
    try {
      const url = clonedFrom ? `/api/runs?cloned_from=${clonedFrom}` : "/api/runs";
      const res = submit ? await submit(body) : (await api(url, { method: "POST", body })).data;
      render(container, html``);
      onLaunched(res);
    } catch (ex) {
      showErrors(ex);
    } finally {
      btn.disabled = false;
    }
  });
  form.scrollIntoView({ block: "start" });
  return { form, readForm, showErrors, clearErrors };
}
