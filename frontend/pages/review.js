// Researcher's review queue (#/review?dataset={id}&status=submitted): each mask over its image
// with annotator, time on task and area (empty and tiny masks flagged); accept, or reject with
// a comment (the mask returns to its annotator). Select several to accept or reject them at
// once; review from the keyboard (J/K or arrows move, A accept, R reject, X select, V side by
// side); "Side by side" shows every annotator's mask of the image with their pairwise IoU.
// "Load more" pages by cursor, so masks decided meanwhile never make it skip any.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { durationMs, number, percentOf } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import "../components/mask-preview/mask-preview.js";

const PAGE = 24;
const STATUSES = ["submitted", "accepted", "rejected"];
const FLAG_TEXT = { empty: "empty mask", tiny: "tiny mask" };
const KEYS = [
  ["J / →", "next"],
  ["K / ←", "previous"],
  ["A", "accept"],
  ["R", "reject (comment first)"],
  ["X", "select"],
  ["V", "side by side"],
];

function flagBadges(flags) {
  return (flags || []).map((f) => html`<span class="badge off flag flag-${f}" title="${f === "empty"
    ? "Nothing is marked: the annotator confirmed it" : "Under 0.5 % of the image is marked"}">${FLAG_TEXT[f] || f}</span>`);
}

export async function mount(root, { query, navigate }) {
  const datasets = await api("/api/datasets");
  const datasetId = query.get("dataset") || "";
  const status = STATUSES.includes(query.get("status")) ? query.get("status") : "submitted";
  render(root, html`
    <section class="page wide-page">
      <h1>Review masks</h1>
      <div class="row card filters">
        <label class="inline">Dataset <select name="dataset">
          <option value="">All datasets</option>
          ${datasets.data.map((d) => html`<option value="${d.id}" ${String(d.id) === datasetId ? html`selected` : ""}>${d.name}</option>`)}
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
      <dialog class="side-by-side" aria-label="Masks of one image side by side"></dialog>
    </section>`);
  const grid = root.querySelector(".review-grid");
  const more = root.querySelector("button.more");
  const countEl = root.querySelector(".count");
  const shownEl = root.querySelector(".shown");
  const listErr = root.querySelector(".list-error");
  const dialog = root.querySelector("dialog.side-by-side");
  const bulkErr = root.querySelector(".bulk-error");
  const bulkOk = root.querySelector(".bulk-ok");
  let cursor = null;
  let total = 0;
  let current = -1;

  const refilter = () => {
    const q = new URLSearchParams();
    const ds = root.querySelector("select[name=dataset]").value;
    if (ds) q.set("dataset", ds);
    q.set("status", root.querySelector("select[name=status]").value);
    navigate(`#/review?${q}`);
  };
  root.querySelector(".filters").addEventListener("change", refilter);

  const cards = () => [...grid.querySelectorAll(".review-card")];
  const showCount = () => {
    countEl.textContent = `${total} ${status}`;
    shownEl.textContent = cards().length ? `${cards().length} shown` : "";
  };

  async function loadPage() {
    const q = new URLSearchParams({ status, limit: String(PAGE) });
    if (cursor) q.set("cursor", cursor);
    if (datasetId) q.set("dataset_id", datasetId);
    const res = await api(`/api/reviews?${q}`);
    cursor = res.next_cursor;
    total = res.count;
    more.hidden = !cursor;
    if (!res.data.length && !cards().length) {
      render(grid, html`<p class="muted empty">Nothing ${status} here.</p>`);
      showCount();
      return;
    }
    for (const item of res.data) grid.appendChild(makeCard(item));
    showCount();
    if (current < 0 && cards().length) setCurrent(0, false);
    syncBulk();
  }

  function makeCard(item) {
    const card = document.createElement("article");
    card.className = "card review-card";
    card.tabIndex = -1;
    card.dataset.annotation = String(item.annotation_id);
    card.dataset.image = String(item.image_id);
    card.dataset.status = item.status;
    if (item.flags && item.flags.length) card.classList.add("flagged");
    render(card, html`
      <label class="inline select"><input type="checkbox" name="selected" aria-label="Select the mask of ${item.annotator} on ${item.filename}"> Select</label>
      <mask-preview image="${item.image_url}" mask="${item.mask_url}" width="${item.width}" height="${item.height}"
        label="Mask of ${item.annotator} on ${item.filename}"></mask-preview>
      <div class="meta">
        <strong>${item.class_name}</strong> <span class="muted">${item.filename}</span><br>
        <span>${item.annotator}</span> · rev ${item.revision} · ${durationMs(item.active_ms)} ·
        <span class="area">${percentOf(item.area, item.width * item.height)} of the image</span>
        <span class="badge status">${item.status}</span> ${flagBadges(item.flags)}
        ${item.review_comment ? html`<div class="muted comment">“${item.review_comment}”</div>` : ""}
      </div>
      <button type="button" class="link compare" title="Side by side (V)">Side by side${item.num_masks_of_image > 1
        ? ` (${item.num_masks_of_image} masks)` : ""}</button>
      <form class="decide stack" novalidate>
        <textarea name="comment" rows="2" placeholder="Comment (needed to reject)"></textarea>
        <div class="row">
          <button type="submit" value="accept" class="primary">Accept</button>
          <button type="submit" value="reject" class="danger">Reject</button>
        </div>
        <p class="form-error" role="alert" hidden></p>
      </form>`);
    card.querySelector("mask-preview").addEventListener("preview-error", (e) => {
      card.querySelector(".meta").insertAdjacentHTML("beforeend", String(html`<p class="form-error">${e.detail.message}</p>`));
    });
    return card;
  }

  function markDecided(card, res) {
    const before = card.dataset.status;
    card.dataset.status = res.status;
    card.querySelector(".status").textContent = res.status;
    card.classList.remove("decided-accepted", "decided-rejected");
    card.classList.add(`decided-${res.status}`);
    for (const b of card.querySelectorAll("form.decide button")) b.disabled = true;
    const box = card.querySelector("input[name=selected]");
    box.checked = false;
    box.disabled = true;
    if (before === status && res.status !== status) total = Math.max(0, total - 1);
  }

  async function decideOne(card, decision) {
    const form = card.querySelector("form.decide");
    const comment = form.comment.value.trim();
    const err = form.querySelector(".form-error");
    err.hidden = true;
    if (decision === "reject" && !comment) {
      err.textContent = "Say why the mask is rejected: the annotator will see it.";
      err.hidden = false;
      form.comment.focus();
      return false;
    }
    try {
      const res = await api(`/api/reviews/${card.dataset.annotation}`, { method: "POST", body: { decision, comment } });
      markDecided(card, res);
      showCount();
      syncBulk();
      return true;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
      return false;
    }
  }

  grid.addEventListener("submit", (e) => {
    e.preventDefault();
    const card = e.target.closest(".review-card");
    setCurrent(cards().indexOf(card), false);
    decideOne(card, e.submitter ? e.submitter.value : "accept");
  });
  grid.addEventListener("click", (e) => {
    const card = e.target.closest(".review-card");
    if (!card) return;
    if (e.target.closest("button.compare")) openSideBySide(card);
    if (!e.target.closest("textarea, button, input, label")) setCurrent(cards().indexOf(card), false);
  });
  grid.addEventListener("change", (e) => { if (e.target.name === "selected") syncBulk(); });

  // ---- selection and bulk decisions ----
  const selectAll = root.querySelector("input[name=select-all]");
  const selected = () => cards().filter((c) => c.querySelector("input[name=selected]").checked);
  function syncBulk() {
    const n = selected().length;
    root.querySelector(".selected-count").textContent = `${n} selected`;
    root.querySelector(".bulk-accept").disabled = !n;
    root.querySelector(".bulk-reject").disabled = !n;
    const open = cards().filter((c) => !c.querySelector("input[name=selected]").disabled);
    selectAll.checked = open.length > 0 && n === open.length;
  }
  selectAll.addEventListener("change", () => {
    for (const c of cards()) {
      const box = c.querySelector("input[name=selected]");
      if (!box.disabled) box.checked = selectAll.checked;
    }
    syncBulk();
  });
  async function decideSelected(decision) {
    bulkErr.hidden = bulkOk.hidden = true;
    const chosen = selected();
    const comment = root.querySelector("input[name=bulk-comment]").value.trim();
    if (decision === "reject" && !comment) {
      bulkErr.textContent = "Say why the selected masks are rejected: their annotators will see it.";
      bulkErr.hidden = false;
      root.querySelector("input[name=bulk-comment]").focus();
      return;
    }
    try {
      const res = await api("/api/reviews/bulk", {
        method: "POST",
        body: { annotation_ids: chosen.map((c) => Number(c.dataset.annotation)), decision, comment },
      });
      const byId = new Map(chosen.map((c) => [Number(c.dataset.annotation), c]));
      for (const r of res.data) markDecided(byId.get(r.annotation_id), r);
      bulkOk.textContent = `${res.data.length} ${decision === "accept" ? "accepted" : "rejected"}` +
        (res.skipped.length ? `; ${res.skipped.length} left as they were (${res.skipped[0].reason})` : ".");
      bulkOk.hidden = false;
      showCount();
      syncBulk();
    } catch (ex) {
      bulkErr.textContent = ex.message;
      bulkErr.hidden = false;
    }
  }
  root.querySelector(".bulk-accept").addEventListener("click", () => decideSelected("accept"));
  root.querySelector(".bulk-reject").addEventListener("click", () => decideSelected("reject"));

  // ---- keyboard review ----
  function setCurrent(i, scroll = true) {
    const all = cards();
    if (!all.length) return;
    current = Math.max(0, Math.min(all.length - 1, i));
    all.forEach((c, k) => c.classList.toggle("current", k === current));
    if (scroll) {
      all[current].scrollIntoView({ block: "nearest" });
      all[current].focus({ preventScroll: true });
    }
  }
  const onKey = (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || dialog.open) return;
    if (e.target.closest && e.target.closest("textarea, input, select")) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const all = cards();
    const card = all[current];
    const k = e.key.toLowerCase();
    if (k === "j" || e.key === "ArrowRight") setCurrent(current + 1);
    else if (k === "k" || e.key === "ArrowLeft") setCurrent(current - 1);
    else if (!card) return;
    else if ((k === "a" || k === "r") && card.querySelector("form.decide button").disabled) {
      setCurrent(current + 1); // decided on this page already
    } else if (k === "a") {
      decideOne(card, "accept").then((ok) => { if (ok) setCurrent(current + 1); });
    } else if (k === "r") {
      const comment = card.querySelector("textarea[name=comment]");
      if (comment.value.trim()) decideOne(card, "reject").then((ok) => { if (ok) setCurrent(current + 1); });
      else decideOne(card, "reject"); // shows the reason is needed and focuses the comment
    } else if (k === "x") {
      const box = card.querySelector("input[name=selected]");
      if (!box.disabled) { box.checked = !box.checked; syncBulk(); }
    } else if (k === "v") openSideBySide(card);
    else return;
    e.preventDefault();
  };
  window.addEventListener("keydown", onKey);

  // ---- one image's masks side by side ----
  async function openSideBySide(card) {
    setCurrent(cards().indexOf(card), false);
    render(dialog, html`<p class="muted">Loading the masks…</p>`);
    if (!dialog.open) dialog.showModal();
    try {
      const res = await api(`/api/reviews/images/${card.dataset.image}`);
      const name = new Map(res.masks.map((m) => [m.annotation_id, m.annotator]));
      render(dialog, html`
        <div class="row"><h2 style="margin:0">${res.class_name} <span class="muted">${res.filename}</span></h2>
          <span class="spacer"></span><button type="button" class="close">Close</button></div>
        <p class="muted mean-iou">${res.masks.length} masks · mean pairwise IoU
          ${res.mean_pairwise_iou === null ? "needs two masks" : number(res.mean_pairwise_iou, 2)}</p>
        <div class="sbs-grid">${res.masks.map((m) => html`
          <figure class="sbs-item" data-annotation="${m.annotation_id}">
            <mask-preview image="${res.image_url}" mask="${m.mask_url}" width="${res.width}" height="${res.height}"
              label="Mask of ${m.annotator}"></mask-preview>
            <figcaption><strong>${m.annotator}</strong> · <span class="badge">${m.status}</span> ·
              ${percentOf(m.area, res.width * res.height)} ${flagBadges(m.flags)}</figcaption>
          </figure>`)}</div>
        ${res.pairs.length ? html`<table class="data iou-pairs">
          <thead><tr><th>Annotator</th><th>Annotator</th><th class="num">IoU</th></tr></thead>
          <tbody>${res.pairs.map((p) => html`<tr><td>${name.get(p.a)}</td><td>${name.get(p.b)}</td>
            <td class="num">${number(p.iou, 2)}</td></tr>`)}</tbody></table>` : ""}`);
      dialog.querySelector("button.close").addEventListener("click", () => dialog.close());
    } catch (ex) {
      render(dialog, html`<p class="form-error" role="alert">${ex.message}</p>
        <button type="button" class="close">Close</button>`);
      dialog.querySelector("button.close").addEventListener("click", () => dialog.close());
    }
  }
  dialog.addEventListener("close", () => { const c = cards()[current]; if (c) c.focus({ preventScroll: true }); });

  more.addEventListener("click", () => loadPage().catch((e) => { listErr.textContent = e.message; listErr.hidden = false; }));
  await loadPage();
  return () => { window.removeEventListener("keydown", onKey); };
}
