// The researcher's table of training runs: one row per run with the columns chosen (kept in
// this browser), a box per row to select runs to compare, and sorting by a column header (the
// server sorts by name, method, state, progress and date; the figures of the final evaluation
// sort here). The progress bar counts a run's final evaluation (full only once the run has ended;
// "evaluating" under it while the evaluation runs). AutoAttack at the run's ε is the headline robust accuracy, PGD beside it; a run
// that failed a gradient-masking check carries a warning badge, a model at chance an "at chance"
// one; clean accuracy names its test images; an empty figure says why (the run's state, not
// measured, no mask set). Wider than its box (a narrow window), the table scrolls inside it.
// Usage: import { COLUMNS } from "../components/runs-table/runs-table.js";   // defines <runs-table>
//   <runs-table></runs-table>
//   table.methodLabel = (m) => nameOf(m);  table.sort = "-created_at";  table.runs = res.data;
//   table.showColumn("tags", true);   table.columns (a Set of keys);   table.selected (a Set of run ids)
//   table.draw();   // again when what the cells read changed (the method labels arrived)
// The table inside keeps the classes `data runs` (styles, browser tests), rows data-run, header
// cells data-col and body cells col-<key>.
// Events: `sortchange` (detail: {sort}, e.g. "-state": fetch the runs in that order),
// `selectionchange` (detail: {selected}, the ids).

import { dateTime, greyLevels } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import {
  agreementCell, autoattackCell, autoattackOf, cleanCell, finalOf, maskingBadge, pgdAtTrainEps, pgdCell, phaseText, runPercent, stateBadge,
} from "../../lib/run-display.js";
import { linkStylesheet } from "../../lib/styles.js";

/** sort: the server's sort key; client: the value the browser sorts by. */
export const COLUMNS = [
  { key: "name", label: "Name", sort: "name", always: true },
  { key: "dataset", label: "Dataset" },
  { key: "method", label: "Method", sort: "method" },
  { key: "model", label: "Model" },
  { key: "eps", label: "ε" },
  { key: "seed", label: "Seed" },
  { key: "state", label: "State", sort: "state" },
  { key: "progress", label: "Progress", sort: "progress" },
  { key: "clean", label: "Clean acc.", client: (r) => finalOf(r).clean_accuracy },
  // at the run's ε: its training ε, or a standard run's evaluation ε (the cell's title says which)
  { key: "autoattack", label: "AutoAttack (n)", client: (r) => (autoattackOf(r) || {}).accuracy },
  { key: "pgd", label: "PGD", client: (r) => (pgdAtTrainEps(r) || {}).accuracy },
  { key: "agreement", label: "Salience agreement", client: (r) => (finalOf(r).salience_agreement || {}).top_mass_in_mask },
  { key: "tags", label: "Tags" },
  { key: "created", label: "Created", sort: "created_at" },
];
const DEFAULT_COLUMNS = ["name", "dataset", "method", "model", "eps", "seed", "state", "progress", "clean", "autoattack", "pgd", "created"];
// a saved column choice from before: "robust" (PGD at the training ε) became AutoAttack + PGD
const RENAMED_COLUMNS = { robust: ["autoattack", "pgd"] };
const COLUMNS_STORAGE = "runs.columns";

/** The columns chosen in this browser (the defaults when none were). */
function loadColumns() {
  try {
    const saved = JSON.parse(localStorage.getItem(COLUMNS_STORAGE) || "null");
    if (Array.isArray(saved) && saved.length) return new Set(saved.flatMap((k) => RENAMED_COLUMNS[k] || [k]));
  } catch { /* fall back to the defaults */ }
  return new Set(DEFAULT_COLUMNS);
}

export class RunsTable extends HTMLElement {
  methodLabel = (method) => method; // how a method reads (the page knows the labels)
  columns = loadColumns();
  selected = new Set();
  _runs = null; // null: not loaded yet
  _sort = "-created_at";
  _clientSort = null; // {key, dir} while a figure column sorts the rows here

  connectedCallback() {
    if (this.querySelector("table.runs")) return;
    render(this, html`<table class="data runs"><thead></thead><tbody><tr><td class="muted">Loading…</td></tr></tbody></table>`);
    this.addEventListener("click", (e) => {
      const th = e.target.closest("th[data-col]");
      if (th) this._sortBy(COLUMNS.find((c) => c.key === th.dataset.col));
    });
    this.addEventListener("change", (e) => {
      if (!e.target.classList.contains("pick")) return;
      const id = Number(e.target.value);
      if (e.target.checked) this.selected.add(id); else this.selected.delete(id);
      this.draw();
      this.dispatchEvent(new CustomEvent("selectionchange", { detail: { selected: new Set(this.selected) } }));
    });
  }

  set runs(runs) { this._runs = runs; this.draw(); }
  get runs() { return this._runs || []; }

  /** The server's order of the rows shown ("-created_at", "name", …); a figure sort ends. */
  set sort(sort) { this._sort = sort; this._clientSort = null; this.draw(); }
  get sort() { return this._sort; }

  showColumn(key, shown) {
    if (shown) this.columns.add(key); else this.columns.delete(key);
    localStorage.setItem(COLUMNS_STORAGE, JSON.stringify([...this.columns]));
    this.draw();
  }

  _sortBy(col) {
    if (col.sort) {
      const sort = this._sort === `-${col.sort}` ? col.sort : `-${col.sort}`;
      this.sort = sort;
      this.dispatchEvent(new CustomEvent("sortchange", { detail: { sort } }));
    } else if (col.client) {
      const dir = this._clientSort && this._clientSort.key === col.key ? -this._clientSort.dir : -1;
      this._clientSort = { key: col.key, dir };
      this.draw();
    }
  }

  _cell(key, r) {
    switch (key) {
      case "name": return html`<a href="#/runs/${r.id}">${r.name || `run ${r.id}`}</a> ${maskingBadge(r)}`;
      case "dataset": return r.dataset_name;
      case "method": return this.methodLabel(r.method);
      case "model": return r.config.model;
      case "eps": return r.method === "standard"
        ? html`<span class="muted" title="standard training has no training ε; it is evaluated at ${greyLevels(r.config.eps)}">–</span>`
        : greyLevels(r.config.eps);
      case "seed": return r.config.seed;
      case "state": return stateBadge(r.state);
      case "progress": {
        // full only once the run has ended: its final evaluation is part of the bar
        const phase = phaseText(r);
        const title = `epoch ${r.current_epoch} of ${r.total_epochs}${phase ? ` · ${phase}` : ""} (training and the final evaluation, weighed by their work)`;
        return html`<div class="progress" title="${title}" data-percent="${runPercent(r)}"><div style="width:${runPercent(r)}%"></div></div>
          ${(r.work || {}).phase === "evaluating" && r.state === "running" ? html`<span class="muted run-phase">evaluating</span>` : ""}`;
      }
      case "clean": return cleanCell(r);
      case "autoattack": return autoattackCell(r);
      case "pgd": return pgdCell(r);
      case "agreement": return agreementCell(r);
      case "tags": return (r.tags || []).join(", ");
      case "created": return dateTime(r.created_at);
      default: return "";
    }
  }

  _arrow(c) {
    const client = this._clientSort;
    if (c.sort && !client && this._sort.replace("-", "") === c.sort) return this._sort.startsWith("-") ? " ▼" : " ▲";
    if (c.client && client && client.key === c.key) return client.dir < 0 ? " ▼" : " ▲";
    return "";
  }

  /** Draw the rows again: the chosen columns, in the chosen order, with the selection. */
  draw() {
    const table = this.querySelector("table.runs");
    if (!table || this._runs === null) return;
    const cols = COLUMNS.filter((c) => c.always || this.columns.has(c.key));
    const rows = [...this._runs];
    if (this._clientSort) {
      const col = COLUMNS.find((c) => c.key === this._clientSort.key);
      const v = (r) => { const x = col.client(r); return Number.isFinite(x) ? x : -Infinity; };
      rows.sort((a, b) => (v(a) - v(b)) * this._clientSort.dir);
    }
    render(table.tHead, html`<tr><th><span class="muted" title="select to compare">✓</span></th>
      ${cols.map((c) => html`<th data-col="${c.key}" class="${c.sort || c.client ? "sortable" : ""}"
        style="${c.sort || c.client ? "cursor:pointer" : ""}">${c.label}${this._arrow(c)}</th>`)}</tr>`);
    if (!rows.length) {
      render(table.tBodies[0], html`<tr><td colspan="${cols.length + 1}" class="muted">No runs match. Launch one with “New run”.</td></tr>`);
      return;
    }
    render(table.tBodies[0], html`${rows.map((r) => html`<tr data-run="${r.id}">
        <td><input type="checkbox" class="pick" value="${r.id}" aria-label="select run ${r.id}" ${this.selected.has(r.id) ? "checked" : ""}></td>
        ${cols.map((c) => html`<td class="col-${c.key}">${this._cell(c.key, r)}</td>`)}</tr>`)}`);
  }
}

if (!customElements.get("runs-table")) {
  linkStylesheet(new URL("./runs-table.css", import.meta.url));
  customElements.define("runs-table", RunsTable);
}
