// The drawing tools: one handler object per tool, all with the same interface (as CVAT's
// drawing handlers), so the canvas looks its handler up by tool name once and never asks
// which tool it is:
//   name                        the tool name it is registered under
//   configure(options)          settings: {size} (brush, eraser), {mode: "add" | "subtract"} (lasso)
//   start(point, event) -> bool pointer went down at image point [x, y]; true when that press
//                               already finished the stroke (the canvas commits it at once)
//   move(points, event)         further image points (coalesced events) while the pointer is down
//   end(event) -> bool          pointer released; true when the stroke is finished: commit it
//   hover(point)                the pointer moves with no button down
//   finish(event) -> bool       close the stroke without the pointer (Enter, double-click)
//   cancel()                    abandon the stroke in progress (the canvas restores its pixels)
//   active                      a stroke is in progress
//   finishable                  finish() applies now
//   sizeKey                     whose size [ and ] change while this tool is chosen
//   cursor                      {diameter (image px), dashed} of the round cursor, or null
//   wheel(deltaY) -> 0 | 1 | 2  optional: the wheel adjusts the tool instead of zooming (1; 2
//                               when that changed the mask), or is not taken (0: the view zooms)
//   keepOnLeave                 optional: leaving a stroke in progress keeps it (the wand's live
//                               region) instead of cancelling it
// A handler only writes into the MaskRaster it was given, and says who drew the pixels it sets
// (raster.paintCode, one of OWNER: the revision's provenance is counted from them).
// Usage: import { createTools } from "./tools.js";
//   const tools = createTools(raster, { brushSize, eraserSize, onPreview, pixels, committed,
//     onSuperpixelsNeeded, onRefine });   // {brush, eraser, lasso, wand, superpixels, refine}

import { OWNER } from "./raster.js";
import { toleranceMap } from "./regions.js";

/** Brush (value 255) and eraser (value 0): a round stamp swept along the pointer's path. */
export class BrushHandler {
  constructor(raster, { name = "brush", value = 255, size = 20 } = {}) {
    this.raster = raster;
    this.name = name;
    this.value = value; // 0 is the eraser: 'destination-out' done by hand so that edges stay binary
    this.size = size;
    this.last = null;
  }
  get sizeKey() { return this.name; }
  get active() { return this.last !== null; }
  get finishable() { return false; }
  get cursor() { return { diameter: this.size, dashed: this.value === 0 }; }
  configure({ size } = {}) { if (size !== undefined) this.size = size; }
  start(p) {
    this.raster.paintCode = OWNER.drawn;
    this.last = p;
    this.raster.capsule(p[0], p[1], p[0], p[1], this.size / 2, this.value);
    return false;
  }
  move(points) {
    if (!this.last) return; // the stroke was cancelled under the pointer
    const r = this.size / 2;
    for (const p of points) {
      const l = this.last;
      this.raster.capsule(l[0], l[1], p[0], p[1], r, this.value);
      this.last = p;
    }
  }
  end() { this.last = null; return true; }
  hover() {}
  finish() { return false; }
  cancel() { this.last = null; }
}

/** Lasso: a freehand drag, or click-by-click polygon vertices; fills, or cuts (mode "subtract",
 * or Alt held while closing). onPreview(points | null, hoverPoint | null, cut) draws the outline. */
export class LassoHandler {
  constructor(raster, { onPreview = () => {}, closeDistance = 8 } = {}) {
    this.raster = raster;
    this.name = "lasso";
    this.onPreview = onPreview;
    this.closeDistance = closeDistance;
    this.points = null;
    this.mode = "add"; // or "subtract"
    this.polygonMode = false; // click-by-click vertices instead of a freehand drag
    this.downAt = null;
    this.moved = false;
  }
  get sizeKey() { return "brush"; } // the lasso has no size: [ and ] still change the brush
  get active() { return this.points !== null; }
  get finishable() { return this.points !== null; }
  get cursor() { return null; }
  configure({ mode } = {}) { if (mode) this.mode = mode; }
  _preview(hover = null) { this.onPreview(this.points, hover, this.mode === "subtract"); }
  start(p, e) {
    if (this.points && this.polygonMode) {
      // a further vertex; clicking near the first one closes the polygon
      const f = this.points[0];
      if (this.points.length >= 3 && Math.hypot(p[0] - f[0], p[1] - f[1]) < this.closeDistance) {
        this.finish(e);
        return true;
      }
      this.points.push(p);
    } else {
      this.points = [p];
      this.polygonMode = false;
    }
    this.downAt = p;
    this.moved = false;
    this._preview();
    return false;
  }
  move(points) {
    if (!this.points) return;
    for (const p of points) {
      const d = this.downAt;
      if (!this.moved && Math.hypot(p[0] - d[0], p[1] - d[1]) < this.closeDistance / 2) continue;
      this.moved = true;
      this.points.push(p);
    }
    this._preview();
  }
  hover(p) { if (this.points && this.polygonMode) this._preview(p); }
  /** Pointer up: a drag closes the freehand lasso; a click switches to polygon mode. */
  end(e) {
    if (!this.points) return false;
    if (!this.polygonMode && this.moved) return this.finish(e);
    this.polygonMode = true;
    return false;
  }
  /** Close the outline and fill it (cut when Alt is held or the mode is "subtract"). */
  finish(e) {
    const pts = this.points;
    this.points = null;
    this.polygonMode = false;
    this.onPreview(null, null, false);
    if (!pts || pts.length < 3) return false;
    const cut = Boolean(e && e.altKey) || this.mode === "subtract";
    this.raster.paintCode = OWNER.drawn;
    this.raster.polygon(pts, cut ? 0 : 255);
    return true;
  }
  cancel() { this.points = null; this.polygonMode = false; this.onPreview(null, null, false); }
}

export const MAX_TOLERANCE = 255;
const clampTolerance = (t) => Math.max(0, Math.min(MAX_TOLERANCE, Math.round(t)));

/** Magic wand: a click fills the seed's connected region within the colour tolerance (the
 * largest R, G or B difference from the seed pixel) at once; Alt held (or mode "subtract") cuts
 * it instead. The region stays live until the next press, Enter, another tool or undo: the
 * wheel (or configure({tolerance})) widens or narrows it in place, from the tolerance map
 * computed at the click (one pass over the pixels whose level lies between the old and the new
 * tolerance, no new flood fill), and the whole of it is one undo step when it is kept.
 * pixels() -> Uint8ClampedArray (RGBA) of the image; committed() -> the mask's owner codes at
 * the last commit (what a narrowed region gives back). */
export class WandHandler {
  constructor(raster, { tolerance = 32, pixels, committed } = {}) {
    this.raster = raster;
    this.name = "wand";
    this.tolerance = tolerance;
    this.pixels = pixels;
    this.committed = committed;
    this.map = null; // the tolerance map of the live region
    this.applied = 0; // the tolerance the live region is drawn at
    this.cut = false;
    this.mode = "add";
  }
  get sizeKey() { return "brush"; }
  get active() { return this.map !== null; }
  get finishable() { return this.map !== null; }
  get keepOnLeave() { return true; } // leaving the live region keeps it (the others cancel)
  get cursor() { return null; }
  /** Settings; returns true when the live region changed (the canvas then says so). */
  configure({ tolerance, mode } = {}) {
    if (mode) this.mode = mode;
    if (tolerance === undefined || clampTolerance(tolerance) === this.tolerance) return false;
    this.tolerance = clampTolerance(tolerance);
    return this._redraw();
  }
  _index(p) {
    const x = Math.floor(p[0]), y = Math.floor(p[1]);
    return x >= 0 && y >= 0 && x < this.raster.width && y < this.raster.height ? y * this.raster.width + x : -1;
  }
  /** Bring the live region from the applied tolerance to the current one. */
  _redraw() {
    const m = this.map;
    if (!m || this.applied === this.tolerance) return false;
    const lo = Math.min(this.applied, this.tolerance), hi = Math.max(this.applied, this.tolerance);
    const box = m.box(hi);
    if (box) {
      this.raster.paintCode = OWNER.wand;
      this.raster.wandBand(box, m.level, lo, hi, this.tolerance > this.applied ? (this.cut ? 0 : 255) : null,
        this.committed());
    }
    this.applied = this.tolerance;
    return true;
  }
  start(p, e) {
    const i = this._index(p);
    if (i < 0) return false;
    const { width, height } = this.raster;
    this.map = toleranceMap(this.pixels(), width, height, i);
    this.cut = Boolean(e && e.altKey) || this.mode === "subtract";
    this.applied = -1; // nothing drawn yet: levels -1 < l <= tolerance are filled
    this._redraw();
    return false;
  }
  move() {}
  end() { return false; } // the region stays live for the wheel and the slider
  hover() {}
  /** Wheel up widens the region (a higher tolerance), down narrows it; only while live. */
  wheel(deltaY) {
    if (!this.map || !deltaY) return 0;
    const step = Math.max(1, Math.round(Math.min(Math.abs(deltaY), 100) / 25));
    return this.configure({ tolerance: this.tolerance - Math.sign(deltaY) * step }) ? 2 : 1;
  }
  /** Keep the live region (the canvas commits it as one undo step). */
  finish() {
    const had = this.map !== null;
    this.map = null;
    return had;
  }
  cancel() { this.map = null; } // the canvas puts the committed pixels back
}

/** Superpixel brush: a stroke fills every superpixel its path crosses, whole (Alt held at the
 * press: clears them). The label map comes from the server once per image and size
 * (configure({index}) with a SuperpixelIndex); until it is there a stroke asks for it through
 * onNeeded(size) and draws nothing. Sizes: SUPERPIXEL_SIZES. */
export const SUPERPIXEL_SIZES = ["small", "medium", "large"];
export class SuperpixelHandler {
  constructor(raster, { size = "medium", onNeeded = () => {} } = {}) {
    this.raster = raster;
    this.name = "superpixels";
    this.spSize = size;
    this.onNeeded = onNeeded;
    this.indexes = {}; // size -> SuperpixelIndex
    this.last = null;
    this.value = 255;
    this.done = null; // labels already filled by this stroke
  }
  get sizeKey() { return "brush"; }
  get active() { return this.last !== null; }
  get finishable() { return false; }
  get cursor() { return null; }
  get index() { return this.indexes[this.spSize] || null; }
  configure({ spSize, index } = {}) {
    if (spSize && SUPERPIXEL_SIZES.includes(spSize)) this.spSize = spSize;
    if (index) this.indexes[index.size] = index;
    if (!this.index) this.onNeeded(this.spSize);
  }
  _fillAt(x, y) {
    const sp = this.index, w = this.raster.width;
    if (x < 0 || y < 0 || x >= w || y >= this.raster.height) return;
    const l = sp.labels[y * w + x];
    if (this.done[l]) return;
    this.done[l] = 1;
    this.raster.setPixels(sp.pixels, sp.start[l], sp.start[l + 1], this.value, sp.box(l));
  }
  /** Every pixel the segment a-b passes through (one sample per pixel step). */
  _segment(a, b) {
    const n = Math.max(1, Math.ceil(Math.max(Math.abs(b[0] - a[0]), Math.abs(b[1] - a[1]))));
    for (let k = 0; k <= n; k++) {
      const t = k / n;
      this._fillAt(Math.floor(a[0] + (b[0] - a[0]) * t), Math.floor(a[1] + (b[1] - a[1]) * t));
    }
  }
  start(p, e) {
    const sp = this.index;
    if (!sp) { this.onNeeded(this.spSize); return false; }
    this.raster.paintCode = OWNER.superpixels;
    this.value = e && e.altKey ? 0 : 255;
    this.done = new Uint8Array(sp.count);
    this.last = p;
    this._segment(p, p);
    return false;
  }
  move(points) {
    if (!this.last) return;
    for (const p of points) { this._segment(this.last, p); this.last = p; }
  }
  end() { const had = this.last !== null; this.last = null; this.done = null; return had; }
  hover() {}
  finish() { return false; }
  cancel() { this.last = null; this.done = null; }
}

/** Refine: drag a box around the object, or click to refine the whole mask; the server's
 * GrabCut answer comes back as a proposal (MaskCanvas.propose) that the annotator accepts or
 * discards. The handler only says what to refine: onRefine({box: [x0, y0, x1, y1]} | {mask: true}). */
export class RefineHandler {
  constructor(raster, { onPreview = () => {}, onRefine = () => {} } = {}) {
    this.raster = raster;
    this.name = "refine";
    this.onPreview = onPreview;
    this.onRefine = onRefine;
    this.from = null;
    this.to = null;
  }
  get sizeKey() { return "brush"; }
  get active() { return this.from !== null; }
  get finishable() { return false; }
  get cursor() { return null; }
  configure() {}
  _box() {
    const [a, b] = [this.from, this.to];
    const { width: w, height: h } = this.raster;
    const x0 = Math.max(0, Math.floor(Math.min(a[0], b[0]))), y0 = Math.max(0, Math.floor(Math.min(a[1], b[1])));
    const x1 = Math.min(w, Math.ceil(Math.max(a[0], b[0]))), y1 = Math.min(h, Math.ceil(Math.max(a[1], b[1])));
    return [x0, y0, x1, y1];
  }
  _outline() {
    const [x0, y0, x1, y1] = this._box();
    this.onPreview([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], null, false);
  }
  start(p) { this.from = p; this.to = p; this._outline(); return false; }
  move(points) { if (this.from && points.length) { this.to = points[points.length - 1]; this._outline(); } }
  end() {
    if (!this.from) return false;
    const box = this._box();
    this.cancel();
    if (box[2] - box[0] >= 4 && box[3] - box[1] >= 4) this.onRefine({ box });
    else this.onRefine({ mask: true });
    return false; // nothing drawn: the answer comes as a proposal
  }
  hover() {}
  finish() { return false; }
  cancel() { this.from = null; this.to = null; this.onPreview(null, null, false); }
}

/** Every tool of the canvas by name; the toolbar and the hotkeys use the same names. */
export function createTools(raster, {
  brushSize = 24, eraserSize = 40, onPreview, pixels, committed, onSuperpixelsNeeded, onRefine,
} = {}) {
  return {
    brush: new BrushHandler(raster, { name: "brush", value: 255, size: brushSize }),
    eraser: new BrushHandler(raster, { name: "eraser", value: 0, size: eraserSize }),
    lasso: new LassoHandler(raster, { onPreview, closeDistance: 8 }),
    wand: new WandHandler(raster, { pixels, committed }),
    superpixels: new SuperpixelHandler(raster, { onNeeded: onSuperpixelsNeeded }),
    refine: new RefineHandler(raster, { onPreview, onRefine }),
  };
}
