// MaskCanvas: a controller (an EventTarget, not a custom element) that turns a container
// element into the surface for drawing a strictly binary salience mask over an image at its
// true pixels. It composes the modules beside it:
//   raster.js   the mask bitmap (paint / erase / fill polygon, PNG decode and encode) and who
//               drew each pixel (the provenance of a save)
//   tools.js    one handler per tool (brush, eraser, lasso, wand, superpixels, refine), all
//               configure / start / move / end
//   regions.js  the wand's tolerance map and the superpixels' index
//   history.js  whole-stroke undo / redo
//   view.js     zoom, pan, overlay, cursor, lasso outline, the region on approval (a refined
//               mask, a machine proposal), per-frame upload of changed pixels
//   input.js    pointer / wheel / keyboard wiring and the hotkeys
// Usage:
//   import { MaskCanvas } from "/static/components/mask-canvas/mask-canvas.js";
//   const mc = new MaskCanvas(containerEl, { image: htmlImageElement });  // mask = image size
//   mc.addEventListener("change", (e) => save(e.detail.version));          // once per whole stroke
//   mc.setTool("brush" | "eraser" | "lasso" | "wand" | "superpixels" | "refine");
//   mc.undo(); mc.redo(); mc.clear();
//   mc.setKeys(["b", "e", ...]);          // remap: one key per row of DEFAULT_KEYS
//   mc.setTolerance(40);                  // the wand's colour tolerance (0..255)
//   mc.setSuperpixels("medium", labels, count);   // a label map the page fetched (on request)
//   mc.propose(bits, {kind: "refined" | "proposal", source, mode: "add" | "replace"});
//   mc.acceptProposal(); mc.discardProposal();   // accept: one undoable step
//   mc.provenance() -> {drawn: 0.8, wand: 0.2}; mc.proposalSource -> "saliency" | null
//   const blob = await mc.toPngBlob();   // white + alpha 255 where salient, transparent elsewhere
//   mc.destroy();
// Events: "change" {version, label} once per stroke / undo / redo / clear; "toolchange" {tool};
// "viewchange" {scale}; "superpixelsneeded" {size}; "refinerequest" {box} | {mask: true};
// "proposalrequest" {}; "proposalchange" {kind | null}.
// The mask is rasterised by our own code (no canvas antialiasing), so every pixel is 0 or 255.
// The image and mask canvases are exactly width x height; zoom and pan are a CSS transform of
// both, so a pointer move only touches the pixels under the brush (no full redraw, no PNG).
//
// Why not a <mask-canvas> custom element: the annotate page builds it imperatively with a
// decoded image (new MaskCanvas(host, {image, width, height, keys})), and relies on its own
// host element becoming the focusable viewport: it calls host.focus() after every toolbar click
// so the hotkeys keep working (they are ignored while a <select> or text field has focus), and
// the browser tests aim the pointer at that host and its .mc-mask canvas. A custom element is
// created without arguments (parser, createElement) and would be a new child of the host rather
// than the host itself, so host.focus() would no longer focus the drawing surface; keeping the
// controller keeps what the page and the tests rely on unchanged.

import { MaskRaster, OWNER } from "./raster.js";
import { SuperpixelIndex } from "./regions.js";
import { createTools, SUPERPIXEL_SIZES } from "./tools.js";
import { History } from "./history.js";
import { View } from "./view.js";
import { bindInput, DEFAULT_KEYS, hotkeyList, keyName } from "./input.js";

export { DEFAULT_KEYS, hotkeyList, keyName, SUPERPIXEL_SIZES };

// Default tool sizes are a fixed share of the image's shorter side, so a tool covers the same
// part of a 28 px digit as of a 2048 px photo: the brush's diameter 4 %, the eraser's 6 %
// (erasing is mostly trimming an edge broadly), at least 1 px and at most MAX_TOOL_SIZE.
export const BRUSH_SHARE = 0.04;
export const ERASER_SHARE = 0.06;
export const MAX_TOOL_SIZE = 500;
const clampSize = (s) => Math.max(1, Math.min(MAX_TOOL_SIZE, Math.round(s)));

/** The default {brush, eraser} diameters in image pixels for a width x height image. */
export function defaultToolSizes(width, height) {
  const side = Math.min(width, height) || 0;
  return { brush: clampSize(side * BRUSH_SHARE), eraser: clampSize(side * ERASER_SHARE) };
}

export class MaskCanvas extends EventTarget {
  /**
   * @param {HTMLElement} container  element that becomes the drawing viewport
   * @param {{image: CanvasImageSource & {naturalWidth?:number}, width?:number, height?:number,
   *          color?: number[], opacity?: number, brushSize?: number, eraserSize?: number,
   *          keys?: string[]}} opts  brushSize / eraserSize in image pixels; left out, they are
   *          defaultToolSizes(width, height)
   */
  constructor(container, opts) {
    super();
    const image = opts.image;
    this.width = opts.width || image.naturalWidth || image.width;
    this.height = opts.height || image.naturalHeight || image.height;
    this.container = container;
    this.version = 0;
    this.keys = DEFAULT_KEYS.map(([k]) => k);
    if (opts.keys) this.setKeys(opts.keys);

    this.raster = new MaskRaster(this.width, this.height, opts.color || [255, 40, 90]);
    this.history = new History(this.raster);
    this.view = new View(container, {
      image,
      raster: this.raster,
      opacity: opts.opacity ?? 0.5,
      onChange: (scale) => this._emit("viewchange", { scale }),
    });
    const defaults = defaultToolSizes(this.width, this.height);
    this.tools = createTools(this.raster, {
      brushSize: opts.brushSize ? clampSize(opts.brushSize) : defaults.brush,
      eraserSize: opts.eraserSize ? clampSize(opts.eraserSize) : defaults.eraser,
      onPreview: (points, hover, cut) => this.view.previewLasso(points, hover, cut),
      pixels: () => this.view.imagePixels(),
      committed: () => this.history.committed,
      onSuperpixelsNeeded: (size) => this._emit("superpixelsneeded", { size }),
      onRefine: (what) => this._emit("refinerequest", what),
    });
    this.lasso = this.tools.lasso;
    this.proposal = null; // {bits, kind, source, mode} on approval
    this.proposalSource = null; // the machine proposal this drawing started from
    this.baseProvenance = null; // shares of the revision the mask was loaded from
    this.tool = "brush";
    this.handler = this.tools.brush; // looked up once per setTool, never branched on by name
    this.view.setCursor(this.handler.cursor);

    this._unbind = bindInput(this);
    // Open fitted to the viewport, enlarged as much as shrunk: a 48 px image is not a speck.
    this.fit();
  }

  // ---- public API -------------------------------------------------------------------------

  setTool(tool) {
    if (!Object.hasOwn(this.tools, tool)) return;
    this.settle();
    this.tool = tool;
    this.handler = this.tools[tool];
    this.container.dataset.tool = tool;
    this.view.setCursor(this.handler.cursor);
    if (tool === "superpixels") this.handler.configure({}); // asks for the label map if missing
    this._emit("toolchange", { tool });
  }

  /** The wand's colour tolerance (0..255: the largest R, G or B difference from the seed). */
  get tolerance() { return this.tools.wand.tolerance; }
  setTolerance(t) {
    if (this.tools.wand.configure({ tolerance: t })) this._liveChanged("wand");
    this._emit("toolchange", { tool: this.tool });
  }

  /** The superpixel brush's size (small, medium, large), and whether its map is here. */
  get superpixelSize() { return this.tools.superpixels.spSize; }
  get superpixelsReady() { return Boolean(this.tools.superpixels.index); }
  setSuperpixelSize(size) {
    this.tools.superpixels.configure({ spSize: size });
    this._emit("toolchange", { tool: this.tool });
  }

  /** A label map of one size (one label 0..count-1 per pixel, row-major) for the superpixel brush. */
  setSuperpixels(size, labels, count) {
    if (labels.length !== this.width * this.height) throw new Error("The superpixel map does not fit the image.");
    const index = new SuperpixelIndex(labels, count, this.width);
    index.size = size;
    this.tools.superpixels.configure({ index });
    this._emit("toolchange", { tool: this.tool });
  }

  // ---- proposals: a refined or machine-proposed mask on approval --------------------------

  /** Show bits (Uint8Array, 1 = salient, width x height) for approval: kind "refined" (GrabCut)
   * or "proposal" (a machine's, from `source`); mode "add" (to the mask) or "replace" it. */
  propose(bits, { kind = "refined", source = null, mode = "replace" } = {}) {
    if (bits.length !== this.width * this.height) throw new Error("The proposal does not fit the image.");
    this.proposal = { bits, kind, source, mode };
    this.view.showRegion((i) => bits[i] !== 0, [0, 0, this.width, this.height], false);
    this._emit("proposalchange", { kind });
  }

  get pendingProposal() { return this.proposal ? this.proposal.kind : null; }

  /** Apply the proposal as one undoable step: its new pixels are attributed to it, pixels that
   * were already drawn keep their author; "replace" clears what it leaves out. */
  acceptProposal() {
    const p = this.proposal;
    if (!p) return false;
    this.discardProposal();
    this.settle();
    const { bits } = p, own = this.raster.owner;
    this.raster.paintCode = p.kind === "proposal" ? OWNER.proposal : OWNER.refined;
    const box = [0, 0, this.width, this.height];
    this.raster.fillWhere(box, (i) => bits[i] !== 0 && own[i] === 0, 255);
    if (p.mode === "replace") this.raster.fillWhere(box, (i) => bits[i] === 0 && own[i] !== 0, 0);
    if (p.kind === "proposal") this.proposalSource = p.source;
    this._commit(p.kind);
    return true;
  }

  discardProposal() {
    if (!this.proposal) return false;
    this.proposal = null;
    this.view.showRegion(null, null);
    this._emit("proposalchange", { kind: null });
    return true;
  }

  /** Share of the salient pixels each drawing aid set ({} when empty): a save's provenance. */
  provenance() { return this.raster.provenance(this.baseProvenance); }

  /** Tool sizes in image pixels by tool name ({brush, eraser}). */
  get sizes() {
    const out = {};
    for (const h of Object.values(this.tools)) if (typeof h.size === "number") out[h.name] = h.size;
    return out;
  }

  setSize(size, tool = this.handler.sizeKey) {
    if (Object.hasOwn(this.tools, tool)) {
      this.tools[tool].configure({ size: clampSize(size) });
    }
    this.view.setCursor(this.handler.cursor);
    this._emit("toolchange", { tool: this.tool });
  }

  /** [ and ]: small steps for small brushes, proportional steps for big ones. */
  stepSize(direction) {
    const key = this.handler.sizeKey;
    const s = this.tools[key].size;
    const step = s < 10 ? 1 : Math.max(1, Math.round(s * 0.15));
    this.setSize(s + direction * step, key);
  }

  /** Remap hotkeys: keys[i] is the key of DEFAULT_KEYS[i] ("" leaves the action unbound). A
   * list kept before rows were added gets the new rows' default keys where still free. */
  setKeys(keys) {
    if (!Array.isArray(keys) || !keys.length || keys.length > DEFAULT_KEYS.length) return;
    const out = keys.slice();
    for (let i = keys.length; i < DEFAULT_KEYS.length; i++) {
      const k = DEFAULT_KEYS[i][0];
      out.push(out.includes(k) ? "" : k);
    }
    this.keys = out;
  }

  setLassoMode(mode) { this.lasso.configure({ mode }); this._emit("toolchange", { tool: this.tool }); }

  get opacity() { return this.view.opacity; }
  get overlayVisible() { return this.view.overlayVisible; }

  setOpacity(opacity) { this.view.setOpacity(opacity); }

  /** Overlay colour [r, g, b] (display only: the saved PNG is always white + alpha). */
  setColor(rgb) {
    this.raster.setColor(rgb);
    this.view.scheduleFlush();
  }

  toggleOverlay() { this.view.toggleOverlay(); }

  undo() {
    if (this.handler.active && !this.handler.keepOnLeave) { this.cancel(); return; }
    this.settle(); // a live wand region is kept first, so that undo takes it back whole
    if (this.history.undo()) this._changed("undo");
  }

  redo() {
    if (this.history.redo()) this._changed("redo");
  }

  clear() {
    this.settle();
    const box = this.raster.contentBox();
    if (!box) return;
    this.raster.strokeBox = null;
    this.raster.writeBox(box, new Uint8Array((box[2] - box[0]) * (box[3] - box[1])));
    this._commit("clear");
  }

  /** Abandon the stroke in progress and put back the pixels it touched. */
  cancel() {
    const announced = this.handler.active && this.handler.keepOnLeave; // its pixels were saved
    this.handler.cancel();
    if (this.history.revert()) {
      if (announced) this._changed("cancel");
      else this.view.scheduleFlush();
    }
  }

  /** End the stroke in progress the way leaving it should: a live wand region is kept (one
   * undo step), a lasso or a box in progress is cancelled. Before submit, a tool change, undo. */
  settle() {
    const h = this.handler;
    if (!h.active) return;
    if (!h.keepOnLeave) { this.cancel(); return; }
    if (h.finish()) this._commitLive(h.name);
  }

  get canUndo() { return this.history.canUndo || (this.handler.active && Boolean(this.handler.keepOnLeave)); }
  get canRedo() { return this.history.canRedo; }

  /** Replace the whole mask from a decoded PNG (server copy or local backup); not undoable.
   * provenance / proposalSource: the revision's, which its pixels keep in later saves. */
  loadMask(img, { provenance = null, proposalSource = null } = {}) {
    this.baseProvenance = provenance;
    this.proposalSource = proposalSource;
    this.raster.decode(img);
    this.history.reset();
    this.view.flush();
  }

  /** Number of salient pixels. */
  countSalient() { return this.raster.count(); }

  /** PNG of the mask: white with alpha 255 where salient, transparent elsewhere. */
  toPngBlob() { return this.raster.toPngBlob(); } // snapshot now; encoding off the critical path

  /** Same PNG as a data: URL, synchronously (for page unload). */
  toDataUrlSync() { return this.raster.toDataUrlSync(); }

  zoomAt(factor, cx, cy) { this.view.zoomAt(factor, cx, cy); }
  zoomBy(factor) { this.view.zoomBy(factor); }
  /** Fit the image in the viewport; never enlarge beyond 100% when onlyShrink. */
  fit(onlyShrink = false) { this.view.fit(onlyShrink); }
  /** Zoom as a multiple of the fitted scale (1 = fitted), what an annotator's preference keeps. */
  get zoomRelativeToFit() { return this.view.scale / this.view.fitScale; }
  /** Fit, then zoom to `rel` times the fitted scale (centred). */
  zoomRelative(rel) {
    this.view.fit();
    if (Number.isFinite(rel) && rel > 0 && Math.abs(rel - 1) > 1e-3) this.view.zoomBy(rel);
  }
  actualSize() { this.view.actualSize(); }

  /** Run a hotkey action by name (the page's buttons use the same names). */
  action(name, e) {
    if (Object.hasOwn(this.tools, name)) { this.setTool(name); return true; }
    switch (name) {
      case "lassoMode": this.setLassoMode(this.lasso.mode === "add" ? "subtract" : "add"); break;
      case "smaller": this.stepSize(-1); break;
      case "bigger": this.stepSize(1); break;
      case "undo": this.undo(); break;
      case "redo": this.redo(); break;
      case "clear": this.clear(); break;
      case "zoomIn": this.zoomBy(1.25); break;
      case "zoomOut": this.zoomBy(1 / 1.25); break;
      case "fit": this.fit(); break;
      case "actual": this.actualSize(); break;
      case "toggleOverlay": this.toggleOverlay(); break;
      case "cancel": if (this.handler.active || !this.discardProposal()) this.cancel(); break;
      case "close": this.finishStroke(e); break;
      case "toleranceDown": this.setTolerance(this.tolerance - 4); break;
      case "toleranceUp": this.setTolerance(this.tolerance + 4); break;
      case "superpixelSize": {
        const i = SUPERPIXEL_SIZES.indexOf(this.superpixelSize);
        this.setSuperpixelSize(SUPERPIXEL_SIZES[(i + 1) % SUPERPIXEL_SIZES.length]);
        break;
      }
      case "accept": if (!this.finishStroke(e)) this.acceptProposal(); break;
      case "discard": if (!this.discardProposal()) this.cancel(); break;
      case "proposal": this._emit("proposalrequest", {}); break;
      default: return false;
    }
    return true;
  }

  destroy() {
    this._unbind();
    this.view.destroy();
  }

  // ---- stroke entry points (called by input.js with image-space points) -------------------

  /** Pointer down; true when the stroke goes on (false: that press already finished it). */
  strokeStart(p, e) {
    const h = this.handler;
    if (h.active && h.keepOnLeave) this.settle(); // a new wand click keeps the last region
    if (h.start(p, e)) { this._commit(h.name); return false; }
    if (h.active && h.keepOnLeave) this._liveChanged(h.name); // drawn already: kept and saved
    else this.view.scheduleFlush();
    return true;
  }

  strokeMove(points, e) {
    this.handler.move(points, e);
    this.view.scheduleFlush();
  }

  strokeEnd(e) {
    const h = this.handler;
    if (h.end(e)) this._commit(h.name);
  }

  hover(p) { this.handler.hover(p); }

  /** Close the stroke without the pointer (Enter, double-click); false when none can be. */
  finishStroke(e) {
    const h = this.handler;
    if (!h.finishable) return false;
    if (h.keepOnLeave) this.settle();
    else if (h.finish(e)) this._commit(h.name);
    return true;
  }

  /** The wheel over the canvas: the tool's own setting when it takes it (the wand's tolerance
   * while its region is live), else false (the view zooms). */
  wheel(deltaY) {
    const h = this.handler;
    const taken = h.wheel ? h.wheel(deltaY) : 0;
    if (!taken) return false;
    if (taken === 2) this._liveChanged(h.name); // the region changed (not at a bound)
    this._emit("toolchange", { tool: this.tool });
    return true;
  }

  // ---- internals --------------------------------------------------------------------------

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  /** The pixels changed since the last commit become one undo step (if any changed). */
  _commit(label) {
    if (this.history.commit(label)) this._changed(label);
    else this.view.scheduleFlush();
  }

  _changed(label) {
    this.version++;
    this.view.scheduleFlush();
    this._emit("change", { version: this.version, label });
  }

  /** A live stroke (the wand's region) changed the mask: shown and saved now, its undo step
   * made when it is kept (_commitLive). */
  _liveChanged(label) { this._changed(label); }

  /** Keep a live stroke as one undo step; its pixels were announced already (no new change). */
  _commitLive(label) {
    this.history.commit(label);
    this.view.scheduleFlush();
    this._emit("toolchange", { tool: this.tool }); // undo / redo buttons follow
  }
}
