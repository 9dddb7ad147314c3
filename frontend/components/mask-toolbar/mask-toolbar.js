// The annotate page's tool panel over a MaskCanvas: brush / eraser / lasso / wand / superpixels
// / refine (with their hotkeys), brush and eraser sizes, lasso cut mode, the wand's tolerance,
// the superpixels' size, a proposal's accept / discard, mask opacity and colour, undo / redo /
// clear, zoom.
// It follows the canvas (its toolchange, viewchange and change events) and gives the focus
// back to the drawing surface after every use, so the hotkeys keep working.
// Usage: import "../components/mask-toolbar/mask-toolbar.js";   // defines <mask-toolbar>
//   <mask-toolbar></mask-toolbar>          (renders <aside class="tools">: a grid cell of the page)
//   toolbar.canvas = mc;                   // a MaskCanvas; toolbar.sync() after mc.setKeys(...)
//   toolbar.useColor("cyan");              // a name of COLORS; the user's choice fires `colorchange`
// Event: `colorchange` (detail: {color}, the colour's name), for the page to keep the choice.

import { wholePercent } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";
import { DEFAULT_KEYS, SUPERPIXEL_SIZES } from "../mask-canvas/mask-canvas.js";

/** Overlay colours by name (display only: the saved mask is white + alpha whatever the colour). */
export const COLORS = { pink: [255, 40, 90], cyan: [0, 220, 255], green: [40, 230, 60], yellow: [255, 230, 0], blue: [40, 80, 255] };

const TOOL_BUTTONS = [
  ["brush", "Brush", "B"],
  ["eraser", "Eraser", "E"],
  ["lasso", "Lasso", "L"],
  ["wand", "Magic wand", "W"],
  ["superpixels", "Superpixels", "S"],
  ["refine", "Refine", "R"],
];

const TOOLBAR = html`<aside class="tools" aria-label="Tools">
        <div class="tool-group">
          ${TOOL_BUTTONS.map(([t, label, key]) => html`<button type="button" data-tool="${t}"
            title="${label} (${key})">${label} <kbd>${key}</kbd></button>`)}
        </div>
        <label class="size brush-size">Brush size <span class="val"></span>
          <input type="range" min="1" max="500" data-size="brush"></label>
        <label class="size eraser-size">Eraser size <span class="val"></span>
          <input type="range" min="1" max="500" data-size="eraser"></label>
        <label class="inline lasso-mode" title="Hold Alt while closing to cut once (X toggles)">
          <input type="checkbox" name="cut"> Lasso cuts <kbd>X</kbd></label>
        <label class="size wand-tolerance" title="The wheel over the image changes it too, and the last region with it">Wand tolerance <span class="val"></span>
          <input type="range" min="0" max="255" name="tolerance"></label>
        <label class="superpixel-size">Superpixels <select name="superpixel-size">
          ${SUPERPIXEL_SIZES.map((z) => html`<option>${z}</option>`)}</select>
          <span class="val superpixel-state"></span></label>
        <div class="proposal-box stack" hidden>
          <span class="proposal-what"></span>
          <div class="tool-group">
            <button type="button" class="primary" data-action="accept" title="Accept (A or Enter)">Accept</button>
            <button type="button" data-action="discard" title="Discard (D or Escape)">Discard</button>
          </div>
        </div>
        <label class="opacity">Mask opacity <span class="val"></span>
          <input type="range" min="0" max="100" name="opacity"></label>
        <label>Mask colour <select name="color">
          ${Object.keys(COLORS).map((c) => html`<option>${c}</option>`)}</select></label>
        <div class="tool-group">
          <button type="button" data-action="undo" title="Undo (Ctrl+Z)">Undo</button>
          <button type="button" data-action="redo" title="Redo (Ctrl+Shift+Z)">Redo</button>
          <button type="button" data-action="clear" title="Clear (Delete)">Clear</button>
        </div>
        <div class="tool-group zoom">
          <button type="button" data-action="zoomOut" title="Zoom out (-)">−</button>
          <span class="zoom-val"></span>
          <button type="button" data-action="zoomIn" title="Zoom in (+)">+</button>
          <button type="button" data-action="fit" title="Fit (0)">Fit</button>
          <button type="button" data-action="actual" title="Actual pixels (1)">1:1</button>
        </div>
      </aside>`;

export class MaskToolbar extends HTMLElement {
  _mc = null;
  _sync = () => this.sync();

  connectedCallback() {
    if (this.querySelector("aside.tools")) return;
    render(this, TOOLBAR);
    this.addEventListener("click", (e) => this._clicked(e));
    this.addEventListener("input", (e) => this._input(e));
    this.querySelector("select[name=color]").addEventListener("change", (e) => {
      this._setColor(e.target.value);
      this.dispatchEvent(new CustomEvent("colorchange", { detail: { color: e.target.value } }));
      this._refocus();
    });
  }

  disconnectedCallback() { this._follow(null); }

  get canvas() { return this._mc; }
  set canvas(mc) {
    this._follow(mc);
    this.querySelector("input[name=opacity]").value = String(wholePercent(mc.opacity));
    this.sync();
  }

  /** Show a kept colour choice (an unknown name is ignored). */
  useColor(name) {
    if (!name || !COLORS[name]) return;
    this.querySelector("select[name=color]").value = name;
    this._setColor(name);
  }

  /** Show the canvas's tool, sizes, modes, undo / redo and zoom (and the tools' hotkeys). */
  sync() {
    const mc = this._mc;
    if (!mc) return;
    const $ = (s) => this.querySelector(s);
    for (const b of this.querySelectorAll("button[data-tool]")) {
      b.setAttribute("aria-pressed", String(b.dataset.tool === mc.tool));
      const row = DEFAULT_KEYS.findIndex(([, action]) => action === b.dataset.tool);
      b.querySelector("kbd").textContent = (mc.keys[row] || "").toUpperCase();
    }
    for (const input of this.querySelectorAll("input[data-size]")) {
      input.value = String(mc.sizes[input.dataset.size]);
      input.closest("label").querySelector(".val").textContent = `${mc.sizes[input.dataset.size]} px`;
    }
    $(".brush-size").classList.toggle("current", mc.tool === "brush");
    $(".eraser-size").classList.toggle("current", mc.tool === "eraser");
    $("input[name=cut]").checked = mc.lasso.mode === "subtract";
    $("input[name=tolerance]").value = String(mc.tolerance);
    $(".wand-tolerance .val").textContent = String(mc.tolerance);
    $(".wand-tolerance").classList.toggle("current", mc.tool === "wand");
    $("select[name=superpixel-size]").value = mc.superpixelSize;
    $(".superpixel-state").textContent = mc.tool === "superpixels" && !mc.superpixelsReady ? "loading…" : "";
    $(".superpixel-size").classList.toggle("current", mc.tool === "superpixels");
    const kind = mc.pendingProposal;
    $(".proposal-box").hidden = !kind;
    $(".proposal-what").textContent = kind === "proposal" ? "Machine proposal: accept or discard"
      : kind ? "Refined mask: accept or discard" : "";
    $(".opacity .val").textContent = `${wholePercent(mc.opacity)}%`;
    $("[data-action=undo]").disabled = !mc.canUndo;
    $("[data-action=redo]").disabled = !mc.canRedo;
    $(".zoom-val").textContent = `${wholePercent(mc.view.scale)}%`;
  }

  _follow(mc) {
    for (const type of ["toolchange", "viewchange", "change", "proposalchange"]) {
      if (this._mc) this._mc.removeEventListener(type, this._sync);
      if (mc) mc.addEventListener(type, this._sync);
    }
    this._mc = mc;
  }

  _setColor(name) {
    if (this._mc) this._mc.setColor(COLORS[name]);
  }

  _clicked(e) {
    const b = e.target.closest("button");
    if (!b || !this._mc) return;
    if (b.dataset.tool) this._mc.setTool(b.dataset.tool);
    if (b.dataset.action) this._mc.action(b.dataset.action);
    this.sync();
    this._refocus();
  }

  _input(e) {
    const t = e.target;
    const mc = this._mc;
    if (!mc) return;
    if (t.dataset.size) mc.setSize(Number(t.value), t.dataset.size);
    if (t.name === "opacity") mc.setOpacity(Number(t.value) / 100);
    if (t.name === "cut") mc.setLassoMode(t.checked ? "subtract" : "add");
    if (t.name === "tolerance") mc.setTolerance(Number(t.value));
    if (t.name === "superpixel-size") { mc.setSuperpixelSize(t.value); this._refocus(); }
    this.sync();
  }

  /** The hotkeys act only while the drawing surface (not a slider or the select) has focus. */
  _refocus() {
    if (this._mc) this._mc.container.focus({ preventScroll: true });
  }
}

if (!customElements.get("mask-toolbar")) {
  linkStylesheet(new URL("./mask-toolbar.css", import.meta.url));
  customElements.define("mask-toolbar", MaskToolbar);
}
