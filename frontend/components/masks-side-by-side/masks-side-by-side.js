// Every annotator's mask of one image side by side, in a modal dialog: each over the image
// with its annotator, status, area and flags, and the IoU of every pair (with their mean).
// Usage: import "../components/masks-side-by-side/masks-side-by-side.js";   // defines <masks-side-by-side>
//   <masks-side-by-side></masks-side-by-side>
//   el.show(imageId);   // opens at once ("Loading the masks…"), then GET /api/reviews/images/{id}
//   el.open             // whether the dialog is open
// The dialog inside keeps the class `side-by-side` (styles, browser tests). Event: `closed`
// when the dialog closes (Close, Escape).

import { api } from "../../lib/api.js";
import { number, percentOf, plural } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";
import { flagBadges } from "../review-card/review-card.js";
import "../mask-preview/mask-preview.js";

export class MasksSideBySide extends HTMLElement {
  connectedCallback() {
    if (this.querySelector("dialog")) return;
    render(this, html`<dialog class="side-by-side" aria-label="Masks of one image side by side"></dialog>`);
    this._dialog = this.querySelector("dialog");
    this._dialog.addEventListener("close", () => this.dispatchEvent(new CustomEvent("closed")));
    this._dialog.addEventListener("click", (e) => { if (e.target.closest("button.close")) this._dialog.close(); });
  }

  get open() { return Boolean(this._dialog && this._dialog.open); }

  async show(imageId) {
    const dialog = this._dialog;
    render(dialog, html`<p class="muted">Loading the masks…</p>`);
    if (!dialog.open) dialog.showModal();
    try {
      render(dialog, comparisonMarkup(await api(`/api/reviews/images/${imageId}`)));
    } catch (ex) {
      render(dialog, html`<p class="form-error" role="alert">${ex.message}</p>
        <button type="button" class="close">Close</button>`);
    }
  }
}

function comparisonMarkup(res) {
  const name = new Map(res.masks.map((m) => [m.annotation_id, m.annotator]));
  return html`
        <div class="row"><h2 style="margin:0">${res.class_name} <span class="muted">${res.filename}</span></h2>
          <span class="spacer"></span><button type="button" class="close">Close</button></div>
        <p class="muted mean-iou">${plural(res.masks.length, "mask")} · mean pairwise IoU
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
            <td class="num">${number(p.iou, 2)}</td></tr>`)}</tbody></table>` : ""}`;
}

if (!customElements.get("masks-side-by-side")) {
  linkStylesheet(new URL("./masks-side-by-side.css", import.meta.url));
  customElements.define("masks-side-by-side", MasksSideBySide);
}
