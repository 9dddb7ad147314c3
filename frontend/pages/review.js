// Researcher's review queue (#/review?dataset={id}&status=submitted): each mask over its image
// with annotator, time on task and area (empty and tiny masks flagged); accept, or reject with
// a comment (the mask returns to its annotator). Select several to accept or reject them at
// once; review from the keyboard (J/K or arrows move, A accept, R reject, X select, V side by
// side); "Side by side" shows every annotator's mask of the image with their pairwise IoU.
// "Load more" pages by cursor, so masks decided meanwhile never make it skip any.
// A card is <review-card>, the comparison <masks-side-by-side>; this page pages, counts, keeps
// the current card, and holds the bulk bar and the keys.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";
import "../components/review-card/review-card.js";
import "../components/masks-side-by-side/masks-side-by-side.js";

const PAGE = 24;
const STATUSES = ["submitted", "accepted", "rejected"];
const KEYS = [
  ["J / →", "next"],
  ["K / ←", "previous"],
  ["A", "accept"],
  ["R", "reject (comment first)"],
  ["X", "select"],
  ["V", "side by side"],
];

function pageMarkup(datasets, datasetId, status) {
  return html`
    <section class="page wide-page">
      <h1>Review masks</h1>
      <div class="row card filters">
        <label class="inline">Dataset <select name="dataset">
          <option value="">All datasets</option>
          ${datasets.map((d) => html`<option value="${d.id}" ${String(d.id) === datasetId ? html`selected` : ""}>${d.name}</option>`)}
        </select></label>
        <label class="inline">Status <select name="status">
          ${STATUSES.map((s) => html`<option ${s === status ? html`selected` : ""}>${s}</option>`)}
        </select></label>
        <span class="spacer"></span><span class="muted count" aria-live="polite"></span>
      </div>
      <div class="row card bulk-bar" role="toolbar" aria-label="Selected masks">
        <label class="inline"><input type="checkbox" name="select-all"> Select all shown</label>
        <span class="selected-count muted">0 selected</span>
        <input name="bulk-comment" placeholder="Comment (needed to reject)" aria-label="Comment for the selected masks">
        <button type="button" class="primary bulk-accept" disabled>Accept selected</button>
        <button type="button" class="danger bulk-reject" disabled>Reject selected</button>
        <span class="spacer"></span>
        <p class="form-error bulk-error" role="alert" hidden></p>
        <p class="form-ok bulk-ok" role="status" hidden></p>
      </div>
      <p class="key-hint muted small" aria-label="Keyboard shortcuts">Keys:
        ${KEYS.map(([k, what]) => html`<span><kbd>${k}</kbd> ${what}</span> `)}</p>
      <p class="form-error list-error" role="alert" hidden></p>
      <div class="review-grid"></div>
      <div class="row" style="margin-top:14px"><button type="button" class="more" hidden>Load more</button>
        <span class="muted shown"></span></div>
      <masks-side-by-side></masks-side-by-side>
    </section>`;
}

/** The cards of one status (and dataset), a page at a time; the count and the current card. */
class ReviewList {
  constructor(root, { status, datasetId }) {
    this.root = root;
    this.status = status;
    this.datasetId = datasetId;
    this.grid = root.querySelector(".review-grid");
    this.cursor = null;
    this.total = 0;
    this.index = -1; // the current card's
  }

  cards() { return [...this.grid.querySelectorAll("review-card")]; }
  get current() { return this.cards()[this.index]; }

  async loadPage() {
    const q = new URLSearchParams({ status: this.status, limit: String(PAGE) });
    if (this.cursor) q.set("cursor", this.cursor);
    if (this.datasetId) q.set("dataset_id", this.datasetId);
    const res = await api(`/api/reviews?${q}`);
    this.cursor = res.next_cursor;
    this.total = res.count;
    this.root.querySelector("button.more").hidden = !this.cursor;
    if (!res.data.length && !this.cards().length) {
      render(this.grid, html`<p class="muted empty">Nothing ${this.status} here.</p>`);
      this.showCount();
      return;
    }
    for (const item of res.data) this.grid.appendChild(Object.assign(document.createElement("review-card"), { item }));
    this.showCount();
    if (this.index < 0 && this.cards().length) this.setCurrent(0, false);
  }

  /** A card left (or joined) this list's status. */
  decided({ before, status }) {
    if (before === this.status && status !== this.status) this.total = Math.max(0, this.total - 1);
    this.showCount();
  }

  showCount() {
    const shown = this.cards().length;
    this.root.querySelector(".count").textContent = `${this.total} ${this.status}`;
    this.root.querySelector(".shown").textContent = shown ? `${shown} shown` : "";
  }

  setCurrent(i, scroll = true) {
    const all = this.cards();
    if (!all.length) return;
    this.index = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((c, k) => c.classList.toggle("current", k === this.index));
    if (scroll) {
      all[this.index].scrollIntoView({ block: "nearest" });
      all[this.index].focus({ preventScroll: true });
    }
  }

  moveTo(card) { this.setCurrent(this.cards().indexOf(card), false); }
}

/** The bulk bar: select all shown, accept or reject the selected (a rejection needs the
 * comment). Returns the function that shows the selection again. */
function bindBulk(root, list) {
  const $ = (s) => root.querySelector(s);
  const selectAll = $("input[name=select-all]");
  const selected = () => list.cards().filter((c) => c.selected);
  function sync() {
    const n = selected().length;
    $(".selected-count").textContent = `${n} selected`;
    $(".bulk-accept").disabled = !n;
    $(".bulk-reject").disabled = !n;
    const open = list.cards().filter((c) => c.open);
    selectAll.checked = open.length > 0 && n === open.length;
  }
  selectAll.addEventListener("change", () => {
    for (const c of list.cards()) c.selected = selectAll.checked;
    sync();
  });
  async function decideSelected(decision) {
    const bulkErr = $(".bulk-error");
    const bulkOk = $(".bulk-ok");
    bulkErr.hidden = bulkOk.hidden = true;
    const chosen = selected();
    const comment = $("input[name=bulk-comment]").value.trim();
    if (decision === "reject" && !comment) {
      bulkErr.textContent = "Say why the selected masks are rejected: their annotators will see it.";
      bulkErr.hidden = false;
      $("input[name=bulk-comment]").focus();
      return;
    }
    try {
      const res = await api("/api/reviews/bulk", {
        method: "POST",
        body: { annotation_ids: chosen.map((c) => Number(c.dataset.annotation)), decision, comment },
      });
      const byId = new Map(chosen.map((c) => [Number(c.dataset.annotation), c]));
      for (const r of res.data) byId.get(r.annotation_id).markDecided(r);
      bulkOk.textContent = `${res.data.length} ${decision === "accept" ? "accepted" : "rejected"}` +
        (res.skipped.length ? `; ${res.skipped.length} left as they were (${res.skipped[0].reason})` : ".");
      bulkOk.hidden = false;
      sync();
    } catch (ex) {
      bulkErr.textContent = ex.message;
      bulkErr.hidden = false;
    }
  }
  $(".bulk-accept").addEventListener("click", () => decideSelected("accept"));
  $(".bulk-reject").addEventListener("click", () => decideSelected("reject"));
  return sync;
}

/** Review from the keyboard (KEYS), outside the text fields and the open dialog; returns the cleanup. */
function bindKeys(list, sideBySide, syncBulk) {
  const next = (ok) => { if (ok) list.setCurrent(list.index + 1); };
  const onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || sideBySide.open) return;
    if (e.target.closest && e.target.closest("textarea, input, select")) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const card = list.current;
    const k = e.key.toLowerCase();
    if (k === "j" || e.key === "ArrowRight") list.setCurrent(list.index + 1);
    else if (k === "k" || e.key === "ArrowLeft") list.setCurrent(list.index - 1);
    else if (!card) return;
    else if ((k === "a" || k === "r") && !card.open) list.setCurrent(list.index + 1); // decided on this page already
    else if (k === "a") card.decide("accept").then(next);
    else if (k === "r") {
      if (card.querySelector("textarea[name=comment]").value.trim()) card.decide("reject").then(next);
      else card.decide("reject"); // shows the reason is needed and focuses the comment
    } else if (k === "x") {
      if (card.open) { card.selected = !card.selected; syncBulk(); }
    } else if (k === "v") { list.moveTo(card); sideBySide.show(card.dataset.image); }
    else return;
    e.preventDefault();
  };
  window.addEventListener("keydown", onKey);
  return () => window.removeEventListener("keydown", onKey);
}

/** New filters are a new address (#/review?dataset=…&status=…): the page mounts again. */
function refilter(root, navigate) {
  const q = new URLSearchParams();
  const ds = root.querySelector("select[name=dataset]").value;
  if (ds) q.set("dataset", ds);
  q.set("status", root.querySelector("select[name=status]").value);
  navigate(`#/review?${q}`);
}

export async function mount(root, { query, navigate }) {
  const datasets = await api("/api/datasets");
  const datasetId = query.get("dataset") || "";
  const status = STATUSES.includes(query.get("status")) ? query.get("status") : "submitted";
  render(root, pageMarkup(datasets.data, datasetId, status));
  root.querySelector(".filters").addEventListener("change", () => refilter(root, navigate));

  const list = new ReviewList(root, { status, datasetId });
  const sideBySide = root.querySelector("masks-side-by-side");
  const syncBulk = bindBulk(root, list);
  const grid = list.grid;
  grid.addEventListener("decided", (e) => { list.decided(e.detail); syncBulk(); });
  grid.addEventListener("change", (e) => { if (e.target.name === "selected") syncBulk(); });
  grid.addEventListener("submit", (e) => list.moveTo(e.target.closest("review-card")));
  grid.addEventListener("click", (e) => {
    const card = e.target.closest("review-card");
    if (card && !e.target.closest("textarea, button, input, label")) list.moveTo(card);
  });
  grid.addEventListener("compare", (e) => { list.moveTo(e.target); sideBySide.show(e.target.dataset.image); });
  sideBySide.addEventListener("closed", () => { const c = list.current; if (c) c.focus({ preventScroll: true }); });
  const unbindKeys = bindKeys(list, sideBySide, syncBulk);

  const listErr = root.querySelector(".list-error");
  const load = () => list.loadPage().then(syncBulk);
  root.querySelector("button.more").addEventListener("click", () => load().catch((e) => { listErr.textContent = e.message; listErr.hidden = false; }));
  await load();
  return unbindKeys;
}
