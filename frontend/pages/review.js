// Researcher's review queue (#/review?dataset={id}&status=submitted): each submitted mask over
// its image with annotator, time on task and area; accept, or reject with a comment (the
// mask returns to its annotator). Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { durationMs, percentOf } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import "../components/mask-preview/mask-preview.js";

const PAGE = 24;
const STATUSES = ["submitted", "accepted", "rejected"];

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
        <span class="spacer"></span><span class="muted count"></span>
      </div>
      <p class="form-error list-error" role="alert" hidden></p>
      <div class="review-grid"></div>
      <div class="row" style="margin-top:14px"><button type="button" class="more" hidden>Load more</button></div>
    </section>`);
  const grid = root.querySelector(".review-grid");
  const more = root.querySelector("button.more");
  const countEl = root.querySelector(".count");
  const listErr = root.querySelector(".list-error");
  let offset = 0;

  const refilter = () => {
    const q = new URLSearchParams();
    const ds = root.querySelector("select[name=dataset]").value;
    if (ds) q.set("dataset", ds);
    q.set("status", root.querySelector("select[name=status]").value);
    navigate(`#/review?${q}`);
  };
  root.querySelector(".filters").addEventListener("change", refilter);

  async function loadPage() {
    const q = new URLSearchParams({ status, offset: String(offset), limit: String(PAGE) });
    if (datasetId) q.set("dataset_id", datasetId);
    const res = await api(`/api/reviews?${q}`);
    offset += res.data.length;
    countEl.textContent = `${res.count} ${status}`;
    more.hidden = offset >= res.count;
    if (!res.count) {
      render(grid, html`<p class="muted">Nothing ${status} here.</p>`);
      return;
    }
    for (const item of res.data) {
      const card = document.createElement("article");
      card.className = "card review-card";
      card.dataset.annotation = String(item.annotation_id);
      render(card, html`
        <mask-preview image="${item.image_url}" mask="${item.mask_url}" width="${item.width}" height="${item.height}"
          label="Mask of ${item.annotator} on ${item.filename}"></mask-preview>
        <div class="meta">
          <strong>${item.class_name}</strong> <span class="muted">${item.filename}</span><br>
          <span>${item.annotator}</span> · rev ${item.revision} · ${durationMs(item.active_ms)} ·
          ${percentOf(item.area, item.width * item.height)} of the image
          <span class="badge status">${item.status}</span>
          ${item.review_comment ? html`<div class="muted comment">“${item.review_comment}”</div>` : ""}
        </div>
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
      grid.appendChild(card);
    }
  }

  grid.addEventListener("submit", async (e) => {
    e.preventDefault();
    const form = e.target;
    const card = form.closest(".review-card");
    const decision = e.submitter ? e.submitter.value : "accept";
    const comment = form.comment.value.trim();
    const err = form.querySelector(".form-error");
    err.hidden = true;
    if (decision === "reject" && !comment) {
      err.textContent = "Say why the mask is rejected: the annotator will see it.";
      err.hidden = false;
      form.comment.focus();
      return;
    }
    try {
      const res = await api(`/api/reviews/${card.dataset.annotation}`, { method: "POST", body: { decision, comment } });
      card.querySelector(".status").textContent = res.status;
      card.classList.add(`decided-${res.status}`);
      for (const b of form.querySelectorAll("button")) b.disabled = true;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    }
  });
  more.addEventListener("click", () => loadPage().catch((e) => { listErr.textContent = e.message; listErr.hidden = false; }));
  await loadPage();
}
