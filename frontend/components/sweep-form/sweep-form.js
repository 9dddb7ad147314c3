// The form that launches a sweep: the launch form's fields as its base configuration
// (components/launch-form, built from GET /api/runs/defaults; or a finished run cloned into
// them), one or two of the settings the run configuration marks sweepable with their values (a
// comma list, or a range start / stop / count, linear or log; budgets in grey levels /255 as
// everywhere), the seeds (the base's Seed(s) field) and an optional baseline arm (one setting
// that sets it apart, for example the method, run with the same seeds and budget). While it is
// filled in it asks POST /api/sweeps/preview for the number of runs and the estimated training
// time, and shows the server's refusals beside their fields (422 {detail, errors}). It keeps no
// list of settings of its own: the sweepable ones, their labels and units come from the API.
// Usage: import "../components/sweep-form/sweep-form.js";   // defines <sweep-form>
//   const form = document.createElement("sweep-form");
//   form.datasets = [{ id, name }, ...];                   // the base's dataset choices
//   form.addEventListener("launched", (e) => navigate(`#/sweeps/${e.detail.id}`));
//   container.appendChild(form);
// The form inside has the classes `launch-form sweep-form` (the styles and the browser tests
// select them); its own inputs are named sweep_* and baseline_* (never a setting's name, which
// the base's fields own).

import { api, ApiError } from "../../lib/api.js";
import { duration, plural, round } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { applies, configValue, loadRunSettings, settingOf } from "../../lib/run-settings.js";
import { linkStylesheet } from "../../lib/styles.js";
import { openLaunchForm } from "../launch-form/launch-form.js";

const AXES = 2; // a sweep varies one or two settings (runconfig.sweep.MAX_AXES)
const PREVIEW_DELAY_MS = 400;
const NOT_NUMBERS = "values are numbers, separated by commas";

const isNumber = (item) => /^(int|float)\b/.test(item.type);
const fromBudget = (item, x) => (item.budget ? x / 255 : x);
const unitNote = (item) => (item.budget ? " (/255)" : "");

/** One swept setting: which, and its values as a list or a range. */
function axisMarkup(i, sweepable) {
  const n = (what) => `sweep_${what}_${i}`;
  return html`<div class="sweep-axis" data-axis="${i}">
    <label>${i === 0 ? "Sweep over" : "…and over (optional)"}<select name="${n("setting")}">
      <option value="">${i === 0 ? "— choose a setting" : "— nothing more"}</option>
      ${sweepable.map((f) => html`<option value="${f.name}">${f.label}</option>`)}</select></label>
    <label>Values as<select name="${n("mode")}"><option value="list">a list</option><option value="range">a range</option></select></label>
    <div class="axis-values">
      <label class="axis-list">Values<span class="axis-unit"></span><input type="text" name="${n("values")}" placeholder="e.g. 0.25, 0.5"></label>
      <label class="axis-range">Start<input type="number" step="any" name="${n("start")}"></label>
      <label class="axis-range">Stop<input type="number" step="any" name="${n("stop")}"></label>
      <label class="axis-range">Count<input type="number" min="2" step="1" name="${n("count")}" value="3"></label>
      <label class="axis-range">Spacing<select name="${n("scale")}"><option value="linear">linear</option><option value="log">log</option></select></label>
      <span class="field-error axis-error" data-for=""></span>
    </div>
  </div>`;
}

/** The sweep's own part of the form, put first in it. */
function sweepMarkup(settings, finished) {
  const sweepable = settings.fields.filter((f) => f.sweep);
  const apart = settings.fields.filter((f) => !f.per_run);
  return html`<fieldset class="sweep-part"><legend>Sweep</legend>
    <label class="sweep-clone">Base configuration<select name="sweep_clone">
      <option value="">the fields below</option>
      ${finished.map((r) => html`<option value="${r.id}">clone of run #${r.id} ${r.name}</option>`)}</select>
      <span class="field-error" data-for="base clone_run_id"></span></label>
    <span class="field-error" data-for="axes"></span>
    ${[...Array(AXES).keys()].map((i) => axisMarkup(i, sweepable))}
    <div class="baseline-row">
      <label>Baseline arm<select name="baseline_setting"><option value="">none</option>
        ${apart.map((f) => html`<option value="${f.name}">${f.label}</option>`)}</select></label>
      <label class="baseline-value" hidden>set to<span class="baseline-control"></span></label>
      <span class="field-error" data-for="baseline"></span>
    </div>
    <p class="muted">Every arm and the baseline run each seed of Seed(s) below; each arm is compared
      with the baseline seed by seed on the sweep's page.</p>
    <p class="sweep-preview" role="status" aria-live="polite"></p>
    <span class="field-error" data-for="runs"></span>
  </fieldset>`;
}

/** The baseline's value control for a setting: a select for a fixed set, else a number. */
function baselineControl(item, current) {
  if (item.type === "bool") {
    return html`<select name="baseline_value"><option value="true">yes</option><option value="false">no</option></select>`;
  }
  if (item.choices) {
    const other = item.choices.find((c) => String(c) !== String(current));
    return html`<select name="baseline_value">${item.choices.map((c) => html`<option value="${c}" ${c === other ? "selected" : ""}>${configValue(item.name, c)}</option>`)}</select>`;
  }
  return html`<input type="number" step="any" name="baseline_value" placeholder="${unitNote(item).trim()}">`;
}

export class SweepForm extends HTMLElement {
  constructor() {
    super();
    this.datasets = [];
    this.handle = null;
    this._timer = null;
    this._asked = 0; // the latest preview asked for; older answers are dropped
  }

  connectedCallback() {
    if (!this.querySelector("form")) {
      this.open(null).catch((err) => render(this, html`<p class="form-error" role="alert">${err.message}</p>`));
    }
  }

  disconnectedCallback() {
    clearTimeout(this._timer);
    this._asked++;
  }

  /** Render the form (the base from run `cloneId`, or the defaults), keeping the sweep's own
   * inputs as they were (`kept`: name -> value). */
  async open(cloneId, kept = {}) {
    const settings = await loadRunSettings();
    const finished = await api("/api/runs?state=succeeded").then((r) => r.data).catch(() => []);
    this.handle = await openLaunchForm(this, {
      datasets: this.datasets,
      cloneId,
      title: "New sweep",
      formClass: "sweep-form",
      what: "sweep",
      submitLabel: "Launch sweep",
      extra: sweepMarkup(settings, finished),
      submit: (base) => this.launch(base),
      onLaunched: (sweep) => this.dispatchEvent(new CustomEvent("launched", { detail: sweep, bubbles: true })),
    });
    const form = this.handle.form;
    this.settings = settings;
    if (cloneId) form.elements.sweep_clone.value = String(cloneId);
    this.restore(kept);
    form.addEventListener("input", () => this.changed());
    form.addEventListener("change", (e) => {
      if (e.target.name === "sweep_clone") { this.reopen(e.target.value); return; }
      if (e.target.name === "baseline_setting") this.drawBaseline();
      this.changed();
    });
    this.arrange();
    this.schedulePreview();
  }

  /** Open again from another base (a run cloned, or the defaults), the sweep's inputs kept. */
  reopen(cloneId) {
    const kept = {};
    for (const el of this.handle.form.querySelectorAll("[name^=sweep_], [name^=baseline_]")) {
      if (el.name !== "sweep_clone") kept[el.name] = el.value;
    }
    clearTimeout(this._timer);
    this._asked++;
    this.open(cloneId || null, kept);
  }

  restore(kept) {
    const el = this.handle.form.elements;
    if (kept.baseline_setting !== undefined) {
      el.baseline_setting.value = kept.baseline_setting;
      this.drawBaseline();
    }
    for (const [name, value] of Object.entries(kept)) if (el[name] && name !== "baseline_setting") el[name].value = value;
  }

  changed() {
    this.arrange();
    this.schedulePreview();
  }

  /** Show a list or a range per axis, the unit, where its refusals go, which settings apply to
   * the base's method, and which base fields the sweep replaces. */
  arrange() {
    const form = this.handle.form;
    const el = form.elements;
    const valueOf = (name) => (el[name] ? el[name].value : undefined);
    const swept = new Set();
    for (let i = 0; i < AXES; i++) {
      const row = form.querySelector(`.sweep-axis[data-axis="${i}"]`);
      const name = el[`sweep_setting_${i}`].value;
      const item = name ? settingOf(name) : null;
      const range = el[`sweep_mode_${i}`].value === "range";
      for (const label of row.querySelectorAll(".axis-range")) label.hidden = !name || !range;
      row.querySelector(".axis-list").hidden = !name || range;
      row.querySelector("[name^=sweep_mode]").parentElement.hidden = !name;
      row.querySelector(".axis-unit").textContent = item ? ` (comma separated${unitNote(item)})` : "";
      row.querySelector(".axis-error").dataset.for = name;
      for (const option of el[`sweep_setting_${i}`].options) {
        const f = option.value ? settingOf(option.value) : null;
        option.disabled = !!f && !applies({ ...f, when: null }, valueOf);
      }
      if (name) swept.add(name);
    }
    for (const field of form.querySelectorAll("[data-item]")) {
      field.classList.toggle("swept", swept.has(field.dataset.item));
      field.title = swept.has(field.dataset.item) ? "Swept: the sweep's values replace this one" : "";
    }
  }

  drawBaseline() {
    const form = this.handle.form;
    const name = form.elements.baseline_setting.value;
    const holder = form.querySelector(".baseline-value");
    holder.hidden = !name;
    const item = name ? settingOf(name) : null;
    const current = item && form.elements[name] ? form.elements[name].value : null;
    render(holder.querySelector(".baseline-control"), item ? baselineControl(item, current) : html``);
  }

  /** The API's SweepCreate body from the base form's body; throws an ApiError (422) naming
   * each field the browser can already tell is wrong. */
  body(base) {
    const el = this.handle.form.elements;
    const errors = [];
    const seedName = this.settings.fields.find((f) => f.per_run).name;
    const { seeds, [seedName]: seed, ...rest } = base;
    const body = {
      name: base.name || "",
      base: rest,
      axes: [],
      seeds: seeds || (seed === undefined ? [] : [seed]),
      baseline: null,
    };
    for (let i = 0; i < AXES; i++) {
      const name = el[`sweep_setting_${i}`].value;
      if (!name) continue;
      const item = settingOf(name);
      if (el[`sweep_mode_${i}`].value === "range") {
        const [start, stop, count] = ["start", "stop", "count"].map((k) => el[`sweep_${k}_${i}`].value.trim());
        if (start === "" || stop === "" || count === "") {
          errors.push({ field: name, message: "a range needs a start, a stop and a count" });
          continue;
        }
        body.axes.push({ setting: name, range: {
          start: fromBudget(item, Number(start)), stop: fromBudget(item, Number(stop)),
          count: Number(count), scale: el[`sweep_scale_${i}`].value,
        } });
      } else {
        const values = el[`sweep_values_${i}`].value.split(/[\s,;]+/).filter(Boolean).map(Number);
        if (values.some((v) => !Number.isFinite(v))) {
          errors.push({ field: name, message: NOT_NUMBERS });
          continue;
        }
        body.axes.push({ setting: name, values: values.map((v) => fromBudget(item, v)) });
      }
    }
    const apart = el.baseline_setting.value;
    if (apart) {
      const item = settingOf(apart);
      const raw = el.baseline_value.value.trim();
      let value = raw;
      if (item.type === "bool") value = raw === "true";
      else if (isNumber(item)) value = raw === "" ? NaN : fromBudget(item, Number(raw));
      if (typeof value === "number" && !Number.isFinite(value)) {
        errors.push({ field: "baseline", message: `give the baseline's ${item.label}${unitNote(item)}` });
      } else {
        body.baseline = { [apart]: typeof value === "number" ? round(value, 12) : value };
      }
    }
    if (errors.length) throw new ApiError(422, "Check the marked fields.", { errors });
    return body;
  }

  launch(base) {
    clearTimeout(this._timer);
    this._asked++;
    return api("/api/sweeps", { method: "POST", body: this.body(base) });
  }

  schedulePreview() {
    clearTimeout(this._timer);
    this._timer = setTimeout(() => this.preview(), PREVIEW_DELAY_MS);
  }

  /** Ask the server what the form would launch; its refusals go beside their fields. */
  async preview() {
    const asked = ++this._asked;
    const { form, readForm, showErrors, clearErrors } = this.handle;
    const line = form.querySelector(".sweep-preview");
    clearErrors();
    const base = readForm({ live: true });
    if (base === null) {
      line.textContent = "Fix the marked fields to see how many runs this launches.";
      return;
    }
    let res;
    try {
      res = await api("/api/sweeps/preview", { method: "POST", body: this.body(base) });
    } catch (ex) {
      if (asked !== this._asked || !form.isConnected) return;
      if (ex.status !== 422) {
        line.textContent = `No preview: ${ex.message}`;
        return;
      }
      showErrors(ex, { live: true });
      const slots = [...form.querySelectorAll(".field-error")].flatMap((s) => s.dataset.for.split(" "));
      const elsewhere = ((ex.body && ex.body.errors) || []).filter((e) => !slots.includes(e.field));
      line.textContent = elsewhere.length
        ? elsewhere.map((e) => `${e.field}: ${e.message}`).join("; ")
        : "Fix the marked fields to see how many runs this launches.";
      return;
    }
    if (asked !== this._asked || !form.isConnected) return;
    render(line, html`<span class="preview-runs" data-runs="${res.runs}">${plural(res.runs, "run")}</span>
      (${plural(res.arms, "arm")} × ${plural(res.seeds, "seed")}) ·
      <span class="preview-time">${res.estimated_s === null ? "no time estimate yet" : `about ${duration(res.estimated_s)} of training`}</span>
      · ${res.in_flight} at a time <span class="muted preview-basis">${res.basis}</span>`);
  }
}

customElements.define("sweep-form", SweepForm);
linkStylesheet(new URL("./sweep-form.css", import.meta.url));
