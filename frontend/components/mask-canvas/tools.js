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
// A handler only writes into the MaskRaster it was given.
// Usage: import { createTools } from "./tools.js";
//   const tools = createTools(raster, { brushSize, eraserSize, onPreview });  // {brush, eraser, lasso}

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
    this.raster.polygon(pts, cut ? 0 : 255);
    return true;
  }
  cancel() { this.points = null; this.polygonMode = false; this.onPreview(null, null, false); }
}

/** Every tool of the canvas by name; the toolbar and the hotkeys use the same names. */
export function createTools(raster, { brushSize = 24, eraserSize = 40, onPreview } = {}) {
  return {
    brush: new BrushHandler(raster, { name: "brush", value: 255, size: brushSize }),
    eraser: new BrushHandler(raster, { name: "eraser", value: 0, size: eraserSize }),
    lasso: new LassoHandler(raster, { onPreview, closeDistance: 8 }),
  };
}
