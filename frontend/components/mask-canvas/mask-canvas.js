// <mask-canvas>: draw a strictly binary salience mask over an image at its true pixels.
// Usage:
//   import { MaskCanvas } from "/static/components/mask-canvas/mask-canvas.js";
//   const mc = new MaskCanvas(containerEl, { image: htmlImageElement });  // mask = image size
//   mc.addEventListener("change", (e) => save(e.detail.version));          // once per whole stroke
//   mc.setTool("brush" | "eraser" | "lasso"); mc.undo(); mc.redo(); mc.clear();
//   mc.setKeys(["b", "e", ...]);          // remap: one key per row of DEFAULT_KEYS
//   const blob = await mc.toPngBlob();   // white + alpha 255 where salient, transparent elsewhere
//   mc.destroy();
// The mask is rasterised by our own code (no canvas antialiasing), so every pixel is 0 or 255.
// The image and mask canvases are exactly width x height; zoom and pan are a CSS transform of
// both, so a pointer move only touches the pixels under the brush (no full redraw, no PNG).

const MIN_SCALE = 0.05;
const MAX_SCALE = 32;
const HISTORY_BYTES = 256 * 1024 * 1024; // undo memory budget (before+after bytes of all steps)
const STATS_KEEP = 20000;

/** Timings of pointer handling, read by the browser test (performance.now() in ms). */
const stats = (window.__maskCanvasStats = window.__maskCanvasStats || {
  pointer: [], // duration of each pointermove handler while drawing
  flush: [], // duration of each animation-frame upload of the changed pixels
  commit: [], // duration of finishing a stroke (history entry)
  reset() { this.pointer.length = 0; this.flush.length = 0; this.commit.length = 0; },
});
function record(list, ms) {
  list.push(ms);
  if (list.length > STATS_KEEP) list.splice(0, list.length - STATS_KEEP);
}

/** Default hotkeys: action -> list of key descriptions; shown on the page by hotkeyList(). */
export const DEFAULT_KEYS = [
  ["b", "brush", "Brush"],
  ["e", "eraser", "Eraser"],
  ["l", "lasso", "Lasso / polygon (drag = freehand, click = vertices, Enter or double-click closes)"],
  ["x", "lassoMode", "Lasso: toggle fill / cut (or hold Alt while closing)"],
  ["[", "smaller", "Smaller brush / eraser"],
  ["]", "bigger", "Bigger brush / eraser"],
  ["ctrl+z", "undo", "Undo last stroke"],
  ["ctrl+shift+z", "redo", "Redo"],
  ["ctrl+y", "redo", "Redo"],
  ["delete", "clear", "Clear the mask (undoable)"],
  ["+", "zoomIn", "Zoom in (also mouse wheel)"],
  ["-", "zoomOut", "Zoom out"],
  ["0", "fit", "Fit to window"],
  ["1", "actual", "Actual pixels (100%)"],
  ["o", "toggleOverlay", "Show / hide the mask"],
  ["space", "pan", "Hold and drag to pan"],
  ["escape", "cancel", "Cancel the current lasso"],
];

/** Normalised name of a key press, e.g. "ctrl+shift+z", "[", "space". */
export function keyName(e) {
  let k = e.key === " " ? "space" : e.key.toLowerCase();
  if (k === "=") k = "+";
  if (k === "_") k = "-";
  if (k === "backspace") k = "delete";
  const mods = [];
  if (e.ctrlKey || e.metaKey) mods.push("ctrl");
  if (e.shiftKey && k.length > 1 || (e.shiftKey && (e.ctrlKey || e.metaKey))) mods.push("shift");
  return [...mods, k].join("+");
}

/** The binary mask: alpha bytes of an ImageData (0 or 255), plus dirty-rectangle tracking. */
class MaskRaster {
  constructor(width, height, rgb) {
    this.width = width;
    this.height = height;
    this.imageData = new ImageData(width, height);
    this.data = this.imageData.data;
    const px = new Uint32Array(this.data.buffer);
    // Little-endian RGBA: colour everywhere, alpha 0 (only the alpha byte is ever changed).
    px.fill((rgb[2] << 16) | (rgb[1] << 8) | rgb[0]);
    this.renderBox = null; // region changed since the last upload to the visible canvas
    this.strokeBox = null; // region changed by the current stroke
  }

  _touch(x0, y0, x1, y1) {
    // inclusive-exclusive box
    for (const name of ["renderBox", "strokeBox"]) {
      const b = this[name];
      if (!b) this[name] = [x0, y0, x1, y1];
      else {
        if (x0 < b[0]) b[0] = x0;
        if (y0 < b[1]) b[1] = y0;
        if (x1 > b[2]) b[2] = x1;
        if (y1 > b[3]) b[3] = y1;
      }
    }
  }

  /** Set every pixel whose centre lies within r of segment (ax,ay)-(bx,by). */
  capsule(ax, ay, bx, by, r, value) {
    const w = this.width, h = this.height, d = this.data;
    const x0 = Math.max(0, Math.floor(Math.min(ax, bx) - r));
    const y0 = Math.max(0, Math.floor(Math.min(ay, by) - r));
    const x1 = Math.min(w, Math.ceil(Math.max(ax, bx) + r) + 1);
    const y1 = Math.min(h, Math.ceil(Math.max(ay, by) + r) + 1);
    if (x0 >= x1 || y0 >= y1) return;
    const dx = bx - ax, dy = by - ay;
    const len2 = dx * dx + dy * dy;
    const r2 = r * r;
    for (let y = y0; y < y1; y++) {
      const cy = y + 0.5;
      let row = (y * w + x0) * 4 + 3;
      for (let x = x0; x < x1; x++, row += 4) {
        const cx = x + 0.5;
        let t = len2 > 0 ? ((cx - ax) * dx + (cy - ay) * dy) / len2 : 0;
        if (t < 0) t = 0; else if (t > 1) t = 1;
        const ex = ax + t * dx - cx, ey = ay + t * dy - cy;
        if (ex * ex + ey * ey <= r2) d[row] = value;
      }
    }
    this._touch(x0, y0, x1, y1);
  }

  /** Fill a polygon (even-odd rule, pixel centres) with value. */
  polygon(points, value) {
    if (points.length < 3) return;
    const w = this.width, h = this.height, d = this.data;
    let minY = Infinity, maxY = -Infinity;
    for (const p of points) { if (p[1] < minY) minY = p[1]; if (p[1] > maxY) maxY = p[1]; }
    const yStart = Math.max(0, Math.ceil(minY - 0.5));
    const yEnd = Math.min(h - 1, Math.floor(maxY - 0.5));
    let bx0 = w, bx1 = 0;
    const xs = [];
    const n = points.length;
    for (let y = yStart; y <= yEnd; y++) {
      const cy = y + 0.5;
      xs.length = 0;
      for (let i = 0, j = n - 1; i < n; j = i++) {
        const a = points[i], b = points[j];
        if ((a[1] <= cy && cy < b[1]) || (b[1] <= cy && cy < a[1])) {
          xs.push(a[0] + ((cy - a[1]) * (b[0] - a[0])) / (b[1] - a[1]));
        }
      }
      xs.sort((p, q) => p - q);
      for (let k = 0; k + 1 < xs.length; k += 2) {
        const xa = Math.max(0, Math.ceil(xs[k] - 0.5));
        const xb = Math.min(w, Math.ceil(xs[k + 1] - 0.5));
        if (xa >= xb) continue;
        let idx = (y * w + xa) * 4 + 3;
        for (let x = xa; x < xb; x++, idx += 4) d[idx] = value;
        if (xa < bx0) bx0 = xa;
        if (xb > bx1) bx1 = xb;
      }
    }
    if (bx0 < bx1) this._touch(bx0, yStart, bx1, yEnd + 1);
  }

  /** Copy the alpha bytes of a box into a new Uint8Array. */
  readBox([x0, y0, x1, y1]) {
    const w = this.width, bw = x1 - x0, out = new Uint8Array(bw * (y1 - y0));
    const d = this.data;
    for (let y = y0, o = 0; y < y1; y++) {
      let i = (y * w + x0) * 4 + 3;
      for (let x = 0; x < bw; x++, i += 4) out[o++] = d[i];
    }
    return out;
  }

  writeBox([x0, y0, x1, y1], bytes) {
    const w = this.width, bw = x1 - x0, d = this.data;
    for (let y = y0, o = 0; y < y1; y++) {
      let i = (y * w + x0) * 4 + 3;
      for (let x = 0; x < bw; x++, i += 4) d[i] = bytes[o++];
    }
    this._touch(x0, y0, x1, y1);
  }

  /** Bounding box of salient pixels, or null if the mask is empty. */
  contentBox() {
    const w = this.width, h = this.height, d = this.data;
    let x0 = w, y0 = h, x1 = 0, y1 = 0;
    for (let y = 0; y < h; y++) {
      let i = y * w * 4 + 3;
      for (let x = 0; x < w; x++, i += 4) {
        if (d[i]) {
          if (x < x0) x0 = x;
          if (x >= x1) x1 = x + 1;
          if (y < y0) y0 = y;
          y1 = y + 1;
        }
      }
    }
    return x1 > x0 ? [x0, y0, x1, y1] : null;
  }

  count() {
    let n = 0;
    const d = this.data;
    for (let i = 3; i < d.length; i += 4) if (d[i]) n++;
    return n;
  }
}

/**
 * Drawing handlers share a narrow interface:
 *   configure(options)     tool settings (size, value: 255 paints, 0 erases)
 *   begin(point, event)    pointer went down at an image-space point [x, y]
 *   draw(points)           further points (coalesced events) while the pointer is down
 *   end(event) -> bool     pointer released; true when the stroke is finished and must be committed
 *   cancel()               abandon the stroke in progress
 * A handler only writes into the MaskRaster it was given.
 */
class BrushHandler {
  constructor(raster) { this.raster = raster; this.size = 20; this.value = 255; this.last = null; }
  // value 0 is the eraser: the same brush with 'destination-out' compositing, done by hand so
  // that edges stay binary.
  configure({ size, composite }) {
    if (size !== undefined) this.size = size;
    if (composite !== undefined) this.value = composite === "destination-out" ? 0 : 255;
  }
  begin(p) { this.last = p; this.raster.capsule(p[0], p[1], p[0], p[1], this.size / 2, this.value); }
  draw(points) {
    const r = this.size / 2;
    for (const p of points) {
      const l = this.last;
      this.raster.capsule(l[0], l[1], p[0], p[1], r, this.value);
      this.last = p;
    }
  }
  end() { this.last = null; return true; }
  cancel() { this.last = null; }
  get active() { return this.last !== null; }
}

class LassoHandler {
  constructor(raster, onPreview) {
    this.raster = raster;
    this.onPreview = onPreview;
    this.points = null;
    this.mode = "add"; // or "subtract"
    this.polygonMode = false; // click-by-click vertices instead of a freehand drag
    this.downAt = null;
  }
  configure({ mode }) { if (mode) this.mode = mode; }
  get active() { return this.points !== null; }
  begin(p) {
    if (this.points && this.polygonMode) {
      // a further vertex; clicking near the first one closes the polygon
      const f = this.points[0];
      if (this.points.length >= 3 && Math.hypot(p[0] - f[0], p[1] - f[1]) < this.closeDistance) {
        return "close";
      }
      this.points.push(p);
    } else {
      this.points = [p];
      this.polygonMode = false;
    }
    this.downAt = p;
    this.moved = false;
    this.onPreview(this.points, null);
    return null;
  }
  draw(points) {
    if (!this.points) return;
    for (const p of points) {
      const d = this.downAt;
      if (!this.moved && Math.hypot(p[0] - d[0], p[1] - d[1]) < this.closeDistance / 2) continue;
      this.moved = true;
      this.points.push(p);
    }
    this.onPreview(this.points, null);
  }
  hover(p) { if (this.points && this.polygonMode) this.onPreview(this.points, p); }
  /** Pointer up: a drag closes the freehand lasso; a click switches to polygon mode. */
  end(e) {
    if (!this.points) return false;
    if (!this.polygonMode && this.moved) return this.finish(e && e.altKey);
    this.polygonMode = true;
    return false;
  }
  finish(subtract = false) {
    const pts = this.points;
    this.points = null;
    this.polygonMode = false;
    this.onPreview(null, null);
    if (!pts || pts.length < 3) return false;
    const cut = subtract || this.mode === "subtract";
    this.raster.polygon(pts, cut ? 0 : 255);
    return true;
  }
  cancel() { this.points = null; this.polygonMode = false; this.onPreview(null, null); }
}

export class MaskCanvas extends EventTarget {
  /**
   * @param {HTMLElement} container  element that becomes the drawing viewport
   * @param {{image: CanvasImageSource & {naturalWidth?:number}, width?:number, height?:number,
   *          color?: number[], opacity?: number, brushSize?: number, eraserSize?: number}} opts
   */
  constructor(container, opts) {
    super();
    const image = opts.image;
    this.width = opts.width || image.naturalWidth || image.width;
    this.height = opts.height || image.naturalHeight || image.height;
    this.container = container;
    this.raster = new MaskRaster(this.width, this.height, opts.color || [255, 40, 90]);
    this.committed = new Uint8Array(this.width * this.height); // mask at the start of the stroke
    this.undoStack = [];
    this.redoStack = [];
    this.historyBytes = 0;
    this.version = 0;
    this.tool = "brush";
    this.sizes = { brush: opts.brushSize || 24, eraser: opts.eraserSize || 40 };
    this.opacity = opts.opacity ?? 0.5;
    this.overlayVisible = true;
    this.view = { scale: 1, tx: 0, ty: 0 };
    this.spaceDown = false;
    this.pan = null;
    this.drawingPointer = null;
    this._frame = 0;
    this.keys = DEFAULT_KEYS.map(([k]) => k);
    if (opts.keys) this.setKeys(opts.keys);

    container.classList.add("mc-viewport");
    container.tabIndex = 0;
    container.innerHTML = "";
    this.stage = document.createElement("div");
    this.stage.className = "mc-stage";
    this.stage.style.width = `${this.width}px`;
    this.stage.style.height = `${this.height}px`;
    this.imageCanvas = this._canvas("mc-image");
    this.maskCanvas = this._canvas("mc-mask");
    const ictx = this.imageCanvas.getContext("2d");
    ictx.imageSmoothingEnabled = false;
    ictx.drawImage(image, 0, 0, this.width, this.height);
    this.maskCtx = this.maskCanvas.getContext("2d");
    this.maskCtx.imageSmoothingEnabled = false;
    const svgNS = "http://www.w3.org/2000/svg";
    this.svg = document.createElementNS(svgNS, "svg");
    this.svg.setAttribute("class", "mc-lasso");
    this.svg.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.svg.setAttribute("width", this.width);
    this.svg.setAttribute("height", this.height);
    this.lassoPath = document.createElementNS(svgNS, "polyline");
    this.svg.appendChild(this.lassoPath);
    this.stage.append(this.imageCanvas, this.maskCanvas, this.svg);
    this.cursor = document.createElement("div");
    this.cursor.className = "mc-cursor";
    container.append(this.stage, this.cursor);

    this.brush = new BrushHandler(this.raster);
    this.lasso = new LassoHandler(this.raster, (pts, hover) => this._previewLasso(pts, hover));
    this.lasso.closeDistance = 8;
    this._applyOpacity();

    this._bind();
    this.fit(true);
  }

  _canvas(cls) {
    const c = document.createElement("canvas");
    c.className = cls;
    c.width = this.width;
    c.height = this.height;
    return c;
  }

  // ---- public API -------------------------------------------------------------------------

  get handler() { return this.tool === "lasso" ? this.lasso : this.brush; }

  setTool(tool) {
    if (this.handler.active) this.cancel();
    this.tool = tool;
    this.container.dataset.tool = tool;
    this._updateCursorSize();
    this._emit("toolchange", { tool });
  }

  setSize(size, tool = this.tool === "eraser" ? "eraser" : "brush") {
    this.sizes[tool] = Math.max(1, Math.min(500, Math.round(size)));
    this._updateCursorSize();
    this._emit("toolchange", { tool: this.tool });
  }

  /** [ and ]: small steps for small brushes, proportional steps for big ones. */
  stepSize(direction) {
    const key = this.tool === "eraser" ? "eraser" : "brush";
    const s = this.sizes[key];
    const step = s < 10 ? 1 : Math.max(1, Math.round(s * 0.15));
    this.setSize(s + direction * step, key);
  }

  /** Remap hotkeys: keys[i] is the key of DEFAULT_KEYS[i] ("" leaves the action unbound). */
  setKeys(keys) {
    if (Array.isArray(keys) && keys.length === DEFAULT_KEYS.length) this.keys = keys.slice();
  }

  setLassoMode(mode) { this.lasso.configure({ mode }); this._emit("toolchange", { tool: this.tool }); }

  setOpacity(opacity) { this.opacity = opacity; this.overlayVisible = true; this._applyOpacity(); }

  /** Overlay colour [r, g, b] (display only: the saved PNG is always white + alpha). */
  setColor(rgb) {
    const d = this.raster.data;
    for (let i = 0; i < d.length; i += 4) { d[i] = rgb[0]; d[i + 1] = rgb[1]; d[i + 2] = rgb[2]; }
    this.raster.renderBox = [0, 0, this.width, this.height];
    this._scheduleFlush();
  }

  toggleOverlay() { this.overlayVisible = !this.overlayVisible; this._applyOpacity(); }

  undo() {
    if (this.handler.active) { this.cancel(); return; }
    const step = this.undoStack.pop();
    if (!step) return;
    this.raster.writeBox(step.box, step.before);
    this._copyToCommitted(step.box);
    this.redoStack.push(step);
    this._changed("undo");
  }

  redo() {
    const step = this.redoStack.pop();
    if (!step) return;
    this.raster.writeBox(step.box, step.after);
    this._copyToCommitted(step.box);
    this.undoStack.push(step);
    this._changed("redo");
  }

  clear() {
    if (this.handler.active) this.cancel();
    const box = this.raster.contentBox();
    if (!box) return;
    this.raster.strokeBox = null;
    this.raster.writeBox(box, new Uint8Array((box[2] - box[0]) * (box[3] - box[1])));
    this._commit("clear");
  }

  cancel() {
    this.handler.cancel();
    // restore the pixels the abandoned stroke touched
    const box = this.raster.strokeBox;
    if (box) {
      this.raster.writeBox(box, this._committedBox(box));
      this.raster.strokeBox = null;
      this._scheduleFlush();
    }
  }

  get canUndo() { return this.undoStack.length > 0; }
  get canRedo() { return this.redoStack.length > 0; }

  /** Replace the whole mask from a decoded PNG (server copy or local backup); not undoable. */
  loadMask(img) {
    const c = document.createElement("canvas");
    c.width = this.width;
    c.height = this.height;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, this.width, this.height);
    const src = ctx.getImageData(0, 0, this.width, this.height).data;
    // Salient where alpha >= 128 if the PNG has transparency, else where grey >= 128.
    let hasAlpha = false;
    for (let i = 3; i < src.length; i += 4) if (src[i] < 128) { hasAlpha = true; break; }
    const d = this.raster.data;
    for (let i = 0; i < src.length; i += 4) {
      const on = hasAlpha ? src[i + 3] >= 128 : src[i] >= 128;
      d[i + 3] = on ? 255 : 0;
      this.committed[i >> 2] = on ? 255 : 0;
    }
    this.undoStack = [];
    this.redoStack = [];
    this.historyBytes = 0;
    this.raster.renderBox = [0, 0, this.width, this.height];
    this.raster.strokeBox = null;
    this._flush();
  }

  /** Number of salient pixels. */
  countSalient() { return this.raster.count(); }

  _exportCanvas() {
    const c = document.createElement("canvas");
    c.width = this.width;
    c.height = this.height;
    const out = new ImageData(this.width, this.height);
    const o32 = new Uint32Array(out.data.buffer);
    const d = this.raster.data;
    for (let i = 0, p = 3; i < o32.length; i++, p += 4) if (d[p]) o32[i] = 0xffffffff;
    c.getContext("2d").putImageData(out, 0, 0);
    return c;
  }

  /** PNG of the mask: white with alpha 255 where salient, transparent elsewhere. */
  toPngBlob() {
    const c = this._exportCanvas(); // snapshot now; encoding happens off the critical path
    return new Promise((resolve, reject) =>
      c.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"));
  }

  /** Same PNG as a data: URL, synchronously (for page unload). */
  toDataUrlSync() { return this._exportCanvas().toDataURL("image/png"); }

  zoomAt(factor, cx, cy) {
    const v = this.view;
    const s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, v.scale * factor));
    const f = s / v.scale;
    v.tx = cx - (cx - v.tx) * f;
    v.ty = cy - (cy - v.ty) * f;
    v.scale = s;
    this._applyView();
  }

  zoomBy(factor) {
    const r = this.container.getBoundingClientRect();
    this.zoomAt(factor, r.width / 2, r.height / 2);
  }

  /** Fit the image in the viewport; never enlarge beyond 100% when onlyShrink. */
  fit(onlyShrink = false) {
    const r = this.container.getBoundingClientRect();
    const vw = r.width || 800, vh = r.height || 600;
    let s = Math.min(vw / this.width, vh / this.height);
    if (onlyShrink) s = Math.min(1, s);
    this.view.scale = s;
    this.view.tx = (vw - this.width * s) / 2;
    this.view.ty = (vh - this.height * s) / 2;
    this._applyView();
  }

  actualSize() {
    const r = this.container.getBoundingClientRect();
    this.view.scale = 1;
    this.view.tx = Math.round((r.width - this.width) / 2);
    this.view.ty = Math.round((r.height - this.height) / 2);
    this._applyView();
  }

  /** Run a hotkey action by name (the page's buttons use the same names). */
  action(name, e) {
    switch (name) {
      case "brush": case "eraser": case "lasso": this.setTool(name); break;
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
      case "cancel": this.cancel(); break;
      case "close": if (this.lasso.active) this._finishLasso(e && e.altKey); break;
      default: return false;
    }
    return true;
  }

  destroy() {
    for (const [target, type, fn, o] of this._listeners) target.removeEventListener(type, fn, o);
    cancelAnimationFrame(this._frame);
    this.container.innerHTML = "";
  }

  // ---- internals --------------------------------------------------------------------------

  _emit(type, detail) { this.dispatchEvent(new CustomEvent(type, { detail })); }

  _applyOpacity() {
    this.maskCanvas.style.opacity = this.overlayVisible ? String(this.opacity) : "0";
  }

  _applyView() {
    const { scale, tx, ty } = this.view;
    this.stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    // crisp pixels when zoomed in; smooth downscaling when the whole image is shown smaller
    this.stage.classList.toggle("mc-pixelated", scale >= 1);
    this._updateCursorSize();
    this._emit("viewchange", { scale });
  }

  _updateCursorSize() {
    const tool = this.tool;
    const size = tool === "lasso" ? 0 : this.sizes[tool] * this.view.scale;
    this.cursor.style.width = this.cursor.style.height = `${size}px`;
    this.cursor.hidden = tool === "lasso";
    this.cursor.classList.toggle("mc-cursor-eraser", tool === "eraser");
  }

  _toImage(e) {
    const r = this._rect;
    const { scale, tx, ty } = this.view;
    return [(e.clientX - r.left - tx) / scale, (e.clientY - r.top - ty) / scale];
  }

  _moveCursor(e) {
    const r = this._rect;
    this.cursor.style.transform = `translate(${e.clientX - r.left}px, ${e.clientY - r.top}px) translate(-50%, -50%)`;
  }

  _previewLasso(points, hover) {
    if (!points) { this.lassoPath.setAttribute("points", ""); return; }
    let s = points.map((p) => `${p[0]},${p[1]}`).join(" ");
    if (hover) s += ` ${hover[0]},${hover[1]}`;
    if (points.length > 2 || hover) s += ` ${points[0][0]},${points[0][1]}`;
    this.lassoPath.setAttribute("points", s);
    this.lassoPath.classList.toggle("mc-cut", this.lasso.mode === "subtract");
  }

  _scheduleFlush() {
    if (!this._frame) this._frame = requestAnimationFrame(() => { this._frame = 0; this._flush(); });
  }

  /** Upload only the changed rectangle of the mask to the visible canvas. */
  _flush() {
    const box = this.raster.renderBox;
    if (!box) return;
    const t0 = performance.now();
    this.raster.renderBox = null;
    const [x0, y0, x1, y1] = box;
    this.maskCtx.putImageData(this.raster.imageData, 0, 0, x0, y0, x1 - x0, y1 - y0);
    record(stats.flush, performance.now() - t0);
  }

  _committedBox([x0, y0, x1, y1]) {
    const w = this.width, bw = x1 - x0, out = new Uint8Array(bw * (y1 - y0));
    for (let y = y0, o = 0; y < y1; y++, o += bw) out.set(this.committed.subarray(y * w + x0, y * w + x1), o);
    return out;
  }

  _copyToCommitted(box) {
    const [x0, y0, x1, y1] = box;
    const bytes = this.raster.readBox(box);
    const w = this.width, bw = x1 - x0;
    for (let y = y0, o = 0; y < y1; y++, o += bw) this.committed.set(bytes.subarray(o, o + bw), y * w + x0);
  }

  /** Turn the pixels changed since the last commit into one undo step. */
  _commit(label) {
    const t0 = performance.now();
    const box = this.raster.strokeBox;
    this.raster.strokeBox = null;
    if (!box) return;
    const before = this._committedBox(box);
    const after = this.raster.readBox(box);
    let same = true;
    for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) { same = false; break; }
    if (same) { this._scheduleFlush(); return; }
    this._copyToCommitted(box);
    this.undoStack.push({ box, before, after, label });
    this.historyBytes += before.length * 2;
    for (const s of this.redoStack) this.historyBytes -= s.before.length * 2;
    this.redoStack = [];
    while (this.historyBytes > HISTORY_BYTES && this.undoStack.length > 1) {
      this.historyBytes -= this.undoStack.shift().before.length * 2;
    }
    record(stats.commit, performance.now() - t0);
    this._changed(label);
  }

  _changed(label) {
    this.version++;
    this._scheduleFlush();
    this._emit("change", { version: this.version, label });
  }

  _finishLasso(subtract) {
    if (this.lasso.finish(subtract)) this._commit("lasso");
  }

  _on(target, type, fn, o) {
    target.addEventListener(type, fn, o);
    this._listeners.push([target, type, fn, o]);
  }

  _bind() {
    this._listeners = [];
    const el = this.container;
    this._rect = el.getBoundingClientRect();
    const refreshRect = () => { this._rect = el.getBoundingClientRect(); };
    this._on(window, "resize", refreshRect);
    this._on(window, "scroll", refreshRect, { passive: true, capture: true });

    this._on(el, "pointerdown", (e) => {
      el.focus({ preventScroll: true });
      refreshRect();
      if (e.button === 1 || (e.button === 0 && this.spaceDown)) {
        this.pan = { x: e.clientX, y: e.clientY, tx: this.view.tx, ty: this.view.ty };
        el.setPointerCapture(e.pointerId);
        el.classList.add("mc-panning");
        e.preventDefault();
        return;
      }
      if (e.button !== 0) return;
      e.preventDefault();
      const p = this._toImage(e);
      if (this.tool === "lasso") {
        if (this.lasso.begin(p) === "close") { this._finishLasso(e.altKey); return; }
      } else {
        this.brush.configure({
          size: this.sizes[this.tool],
          composite: this.tool === "eraser" ? "destination-out" : "source-over",
        });
        this.brush.begin(p);
        this._scheduleFlush();
      }
      this.drawingPointer = e.pointerId;
      el.setPointerCapture(e.pointerId);
    });

    this._on(el, "pointermove", (e) => {
      const t0 = performance.now();
      this._moveCursor(e);
      if (this.pan) {
        this.view.tx = this.pan.tx + e.clientX - this.pan.x;
        this.view.ty = this.pan.ty + e.clientY - this.pan.y;
        this._applyView();
        return;
      }
      if (this.drawingPointer !== e.pointerId) {
        if (this.tool === "lasso") this.lasso.hover(this._toImage(e));
        return;
      }
      const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
      const list = events.length ? events : [e];
      const pts = new Array(list.length);
      for (let i = 0; i < list.length; i++) pts[i] = this._toImage(list[i]);
      this.handler.draw(pts);
      if (this.tool !== "lasso") this._scheduleFlush();
      record(stats.pointer, performance.now() - t0);
    });

    const up = (e) => {
      if (this.pan) {
        this.pan = null;
        el.classList.remove("mc-panning");
        return;
      }
      if (this.drawingPointer !== e.pointerId) return;
      this.drawingPointer = null;
      if (e.type === "pointercancel") { this.cancel(); return; }
      if (this.handler.end(e)) this._commit(this.tool);
    };
    this._on(el, "pointerup", up);
    this._on(el, "pointercancel", up);
    this._on(el, "pointerenter", () => { this.cursor.classList.add("mc-cursor-on"); });
    this._on(el, "pointerleave", () => { this.cursor.classList.remove("mc-cursor-on"); });
    this._on(el, "dblclick", (e) => { if (this.lasso.active) this._finishLasso(e.altKey); });
    this._on(el, "contextmenu", (e) => e.preventDefault());

    this._on(el, "wheel", (e) => {
      e.preventDefault();
      refreshRect();
      const factor = Math.exp(-Math.sign(e.deltaY) * Math.min(Math.abs(e.deltaY), 100) / 300);
      this.zoomAt(factor, e.clientX - this._rect.left, e.clientY - this._rect.top);
    }, { passive: false });

    this._on(window, "keydown", (e) => {
      const t = e.target;
      if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)) && t.type !== "range") return;
      if (document.querySelector("dialog[open]")) return;
      const k = keyName(e);
      const row = k ? this.keys.indexOf(k) : -1;
      const action = row >= 0 ? DEFAULT_KEYS[row][1] : null;
      if (action === "pan") {
        this.spaceDown = true;
        el.classList.add("mc-pan-ready");
        e.preventDefault();
        return;
      }
      if (k === "enter" && this.lasso.active) { this._finishLasso(e.altKey); e.preventDefault(); return; }
      if (action && this.action(action, e)) e.preventDefault();
    });
    this._on(window, "keyup", (e) => {
      const panKey = this.keys[DEFAULT_KEYS.findIndex(([, a]) => a === "pan")];
      if (this.spaceDown && keyName(e).split("+").pop() === panKey.split("+").pop()) { this.spaceDown = false; el.classList.remove("mc-pan-ready"); }
    });
    this._on(window, "blur", () => { this.spaceDown = false; el.classList.remove("mc-pan-ready"); });
  }
}

/** Hotkeys as [key, description] rows for display (keys: a remapped list, else the defaults). */
export function hotkeyList(keys) {
  return DEFAULT_KEYS.map(([key, , label], i) => [keys ? keys[i] : key, label]);
}
