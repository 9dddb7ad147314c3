// One mask under review: the mask over its image, who drew it, time on task and area (empty
// and tiny masks flagged), which drawing aids made it (and a proposal it began from), its status and the reviewer's comment; select (for bulk decisions),
// "Side by side", and accept / reject (a rejection needs a comment: the annotator sees it).
// Usage: import { flagBadges } from "../components/review-card/review-card.js";   // defines <review-card>
//   const card = Object.assign(document.createElement("review-card"), { item }); grid.append(card);
//   await card.decide("accept");   // true when the server took it; card.markDecided(res) for a bulk answer
//   card.selected = true;  card.open (not decided on this page yet)
// item: a row of GET /api/reviews. The element keeps the classes `card review-card` (the page's
// styles and the browser tests select them) and data-annotation, data-image, data-status.
// Events (bubbling): `decided` (detail: {before, status}), `compare` (Side by side was asked for).

import { api } from "../../lib/api.js";
import { durationMs, percentOf, wholePercent } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";
import "../mask-preview/mask-preview.js";

const FLAG_TEXT = { empty: "empty mask", tiny: "tiny mask" };

/** Badges for a mask's flags (empty, tiny), with why each is raised. */
export function flagBadges(flags) {
  return (flags || []).map((f) => html`<span class="badge off flag flag-${f}" title="${f === "empty"
    ? "Nothing is marked: the annotator confirmed it" : "Under 0.5 % of the image is marked"}">${FLAG_TEXT[f] || f}</span>`);
}

const TOOL_TEXT = { drawn: "by hand", wand: "wand", superpixels: "superpixels", refined: "refined", proposal: "proposal" };

/** How the mask was made: each drawing aid's share of its pixels, and a proposal it began from. */
function provenanceText(item) {
  const shares = Object.entries(item.provenance || {}).sort((a, b) => b[1] - a[1]);
  const made = shares.length && !(shares.length === 1 && shares[0][0] === "drawn")
    ? html`<div class="muted small provenance">made with ${shares.map(([tool, share], i) =>
      html`${i ? " · " : ""}${TOOL_TEXT[tool] || tool} ${wholePercent(share)}%`)}</div>` : "";
  const seeded = item.proposal_source ? html`<span class="badge off proposal-seeded"
    title="The annotator accepted a machine proposal (${item.proposal_source}): it can anchor what people mark">from a proposal</span>` : "";
  return html`${seeded}${made}`;
}

export class ReviewCard extends HTMLElement {
  item = null;

  connectedCallback() {
    if (this.querySelector("form.decide")) return;
    const item = this.item;
    this.className = "card review-card";
    this.setAttribute("role", "article");
    this.tabIndex = -1;
    this.dataset.annotation = String(item.annotation_id);
    this.dataset.image = String(item.image_id);
    this.dataset.status = item.status;
    if (item.flags && item.flags.length) this.classList.add("flagged");
    render(this, cardMarkup(item));
    this.querySelector("mask-preview").addEventListener("preview-error", (e) => {
      this.querySelector(".meta").insertAdjacentHTML("beforeend", String(html`<p class="form-error">${e.detail.message}</p>`));
    });
    this.querySelector("form.decide").addEventListener("submit", (e) => {
      e.preventDefault();
      this.decide(e.submitter ? e.submitter.value : "accept");
    });
    this.querySelector("button.compare").addEventListener("click", () => {
      this.dispatchEvent(new CustomEvent("compare", { bubbles: true }));
    });
  }

  get _box() { return this.querySelector("input[name=selected]"); }

  /** Not decided on this page yet (it can be selected and decided). */
  get open() { return !this._box.disabled; }
  get selected() { return this._box.checked; }
  set selected(value) { if (this.open) this._box.checked = Boolean(value); }

  /** Accept or reject with the card's comment; false when it was not sent or refused. */
  async decide(decision) {
    const form = this.querySelector("form.decide");
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
      this.markDecided(await api(`/api/reviews/${this.dataset.annotation}`, { method: "POST", body: { decision, comment } }));
      return true;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
      return false;
    }
  }

  /** Show the server's decision ({status}); the card can no longer be decided or selected. */
  markDecided(res) {
    const before = this.dataset.status;
    this.dataset.status = res.status;
    this.querySelector(".status").textContent = res.status;
    this.classList.remove("decided-accepted", "decided-rejected");
    this.classList.add(`decided-${res.status}`);
    for (const b of this.querySelectorAll("form.decide button")) b.disabled = true;
    this._box.checked = false;
    this._box.disabled = true;
    this.dispatchEvent(new CustomEvent("decided", { bubbles: true, detail: { before, status: res.status } }));
  }
}

function cardMarkup(item) {
  return html`
      <label class="inline select"><input type="checkbox" name="selected" aria-label="Select the mask of ${item.annotator} on ${item.filename}"> Select</label>
      <mask-preview image="${item.image_url}" mask="${item.mask_url}" width="${item.width}" height="${item.height}"
        label="Mask of ${item.annotator} on ${item.filename}"></mask-preview>
      <div class="meta">
        <strong>${item.class_name}</strong> <span class="muted">${item.filename}</span><br>
        <span>${item.annotator}</span> · rev ${item.revision} · ${durationMs(item.active_ms)} ·
        <span class="area">${percentOf(item.area, item.width * item.height)} of the image</span>
        <span class="badge status">${item.status}</span> ${flagBadges(item.flags)}
        ${provenanceText(item)}
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
      </form>`;
}

if (!customElements.get("review-card")) {
  linkStylesheet(new URL("./review-card.css", import.meta.url));
  customElements.define("review-card", ReviewCard);
}
