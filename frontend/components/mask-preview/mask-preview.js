// Read-only preview of a mask over its image (review, consensus): the image at its own pixels,
// dimmed outside the mask so the salient region reads on any image colour. Grey masks
// (consensus) dim in proportion.
// Usage: import "../components/mask-preview/mask-preview.js";   // defines <mask-preview>
//   <mask-preview image="/api/images/3/file" mask="/api/annotations/9/mask.png"
//     width="32" height="32" label="Mask of ann on 3.png"></mask-preview>
// Attributes: image, mask (URLs; changing either redraws), width / height (the canvas size
// until the image has loaded, then the image's own), label (the canvas's aria-label), dim
// (0..1, how dark outside the mask; 0.7 unless set). It renders one <canvas class="mask-preview">
// and dispatches (bubbling) `drawn` (detail: { fraction }, the salient share of the pixels) or
// `preview-error` (detail: { message }) when the image or the mask could not be loaded.
// The drawing itself is also exported as a function:
//   await drawMaskPreview(canvas, "/api/images/3/file", "/api/annotations/9/mask.png");

import { linkStylesheet } from "../../lib/styles.js";

function load(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`Could not load ${src}`));
    img.src = src;
  });
}

/** Draw image + tinted mask into canvas (sized to the image); returns the salient fraction. */
export async function drawMaskPreview(canvas, imageUrl, maskUrl, { dim = 0.7 } = {}) {
  const [img, mask] = await Promise.all([load(imageUrl), load(maskUrl)]);
  return paint(canvas, img, mask, dim);
}

/** Draw loaded image + mask elements into canvas; returns the salient fraction. */
function paint(canvas, img, mask, dim = 0.7) {
  const w = img.naturalWidth, h = img.naturalHeight;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0);
  const m = document.createElement("canvas");
  m.width = w;
  m.height = h;
  const mctx = m.getContext("2d", { willReadFrequently: true });
  mctx.imageSmoothingEnabled = false;
  mctx.drawImage(mask, 0, 0, w, h);
  const data = mctx.getImageData(0, 0, w, h);
  const d = data.data;
  let hasAlpha = false;
  for (let i = 3; i < d.length; i += 4) if (d[i] < 255) { hasAlpha = true; break; }
  let on = 0;
  for (let i = 0; i < d.length; i += 4) {
    const v = hasAlpha ? d[i + 3] : d[i]; // salience 0..255
    if (v >= 128) on++;
    d[i] = d[i + 1] = d[i + 2] = 0;
    d[i + 3] = Math.round((255 - v) * dim);
  }
  mctx.putImageData(data, 0, 0);
  ctx.drawImage(m, 0, 0);
  return on / (w * h);
}

export class MaskPreview extends HTMLElement {
  static observedAttributes = ["image", "mask", "dim"];

  #drawn = 0; // counts draws; an older one that finishes after a newer one is dropped
  #shown = ""; // what the canvas shows (image, mask, dim), so moving the element does not redraw

  connectedCallback() {
    let canvas = this.canvas;
    if (!canvas) {
      canvas = document.createElement("canvas");
      canvas.className = "mask-preview";
      for (const a of ["width", "height"]) if (this.hasAttribute(a)) canvas.setAttribute(a, this.getAttribute(a));
      this.append(canvas);
    }
    if (this.hasAttribute("label")) canvas.setAttribute("aria-label", this.getAttribute("label"));
    this.#draw();
  }

  attributeChangedCallback() {
    if (this.isConnected && this.canvas) this.#draw();
  }

  /** The canvas it draws into (null until it is first on the page). */
  get canvas() { return this.querySelector(":scope > canvas.mask-preview"); }

  async #draw() {
    const image = this.getAttribute("image");
    const mask = this.getAttribute("mask");
    const dimAttr = Number(this.getAttribute("dim"));
    const dim = this.hasAttribute("dim") && Number.isFinite(dimAttr) ? dimAttr : undefined;
    const key = JSON.stringify([image, mask, dim]);
    if (!image || !mask || key === this.#shown) return;
    this.#shown = key;
    const token = ++this.#drawn;
    try {
      const [img, m] = await Promise.all([load(image), load(mask)]);
      if (token !== this.#drawn) return;
      const fraction = paint(this.canvas, img, m, dim);
      this.dispatchEvent(new CustomEvent("drawn", { detail: { fraction }, bubbles: true }));
    } catch (err) {
      if (token !== this.#drawn) return;
      this.#shown = ""; // try again when it is next connected
      this.dispatchEvent(new CustomEvent("preview-error", { detail: { message: err.message }, bubbles: true }));
    }
  }
}

if (!customElements.get("mask-preview")) {
  linkStylesheet(new URL("./mask-preview.css", import.meta.url));
  customElements.define("mask-preview", MaskPreview);
}
