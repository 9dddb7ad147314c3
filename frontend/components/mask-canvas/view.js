// What the annotator sees: the image and mask canvases at the image's true pixels inside a
// clipping viewport, zoom and pan as one CSS transform of both (a pointer move never redraws
// the whole image), the mask overlay's opacity, the round brush cursor, the lasso outline, and
// the upload of only the changed rectangle of the mask once per animation frame.
// Usage: import { View } from "./view.js";
//   const v = new View(container, { image, raster, opacity, onChange: (scale) => ... });
//   v.fit(); v.zoomAt(1.25, x, y); v.panTo(tx, ty); v.scale;  v.toImage(x, y) -> [ix, iy];
//   v.scheduleFlush(); v.setCursor({ diameter, dashed } | null); v.previewLasso(points, hover, cut);
//   v.showRegion(test | null, box, cut);  // a region on its own layer: a proposal on approval
//   v.imagePixels() -> Uint8ClampedArray   // the image's RGBA (read once, for the wand)

const MIN_SCALE = 0.05;
const MAX_SCALE = 32;
const SVG_NS = "http://www.w3.org/2000/svg";

export class View {
  /**
   * @param {HTMLElement} container  becomes the viewport (its children are replaced)
   * @param {{image: CanvasImageSource, raster: import("./raster.js").MaskRaster, opacity?: number,
   *          onChange?: (scale: number) => void}} opts
   */
  constructor(container, { image, raster, opacity = 0.5, onChange = () => {} }) {
    this.container = container;
    this.raster = raster;
    this.width = raster.width;
    this.height = raster.height;
    this.onChange = onChange;
    this.scale = 1;
    this.tx = 0;
    this.ty = 0;
    this.opacity = opacity;
    this.overlayVisible = true;
    this.cursorSpec = null;
    this._frame = 0;

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
    // the region on approval (a refined or proposed mask): its own layer
    this.regionCanvas = this._canvas("mc-region");
    this.regionCtx = this.regionCanvas.getContext("2d");
    this.regionData = null; // ImageData, made on first use
    this.regionBox = null; // the part of regionData that holds pixels
    this._pixels = null;
    this.svg = document.createElementNS(SVG_NS, "svg");
    this.svg.setAttribute("class", "mc-lasso");
    this.svg.setAttribute("viewBox", `0 0 ${this.width} ${this.height}`);
    this.svg.setAttribute("width", this.width);
    this.svg.setAttribute("height", this.height);
    this.lassoPath = document.createElementNS(SVG_NS, "polyline");
    this.svg.appendChild(this.lassoPath);
    this.stage.append(this.imageCanvas, this.maskCanvas, this.regionCanvas, this.svg);
    this.cursor = document.createElement("div");
    this.cursor.className = "mc-cursor";
    container.append(this.stage, this.cursor);
    this._applyOpacity();
  }

  _canvas(cls) {
    const c = document.createElement("canvas");
    c.className = cls;
    c.width = this.width;
    c.height = this.height;
    return c;
  }

  // ---- zoom and pan -----------------------------------------------------------------------

  /** Zoom by factor keeping the viewport point (cx, cy) still. */
  zoomAt(factor, cx, cy) {
    const s = Math.min(MAX_SCALE, Math.max(MIN_SCALE, this.scale * factor));
    const f = s / this.scale;
    this.tx = cx - (cx - this.tx) * f;
    this.ty = cy - (cy - this.ty) * f;
    this.scale = s;
    this.apply();
  }

  zoomBy(factor) {
    const r = this.container.getBoundingClientRect();
    this.zoomAt(factor, r.width / 2, r.height / 2);
  }

  /** The scale at which the whole image fills the viewport (what fit() sets). */
  get fitScale() {
    const r = this.container.getBoundingClientRect();
    return Math.min((r.width || 800) / this.width, (r.height || 600) / this.height);
  }

  /** Fit the image in the viewport; never enlarge beyond 100% when onlyShrink. */
  fit(onlyShrink = false) {
    const r = this.container.getBoundingClientRect();
    const vw = r.width || 800, vh = r.height || 600;
    let s = Math.min(vw / this.width, vh / this.height);
    if (onlyShrink) s = Math.min(1, s);
    this.scale = s;
    this.tx = (vw - this.width * s) / 2;
    this.ty = (vh - this.height * s) / 2;
    this.apply();
  }

  actualSize() {
    const r = this.container.getBoundingClientRect();
    this.scale = 1;
    this.tx = Math.round((r.width - this.width) / 2);
    this.ty = Math.round((r.height - this.height) / 2);
    this.apply();
  }

  panTo(tx, ty) {
    this.tx = tx;
    this.ty = ty;
    this.apply();
  }

  apply() {
    const { scale, tx, ty } = this;
    this.stage.style.transform = `translate(${tx}px, ${ty}px) scale(${scale})`;
    // crisp pixels when zoomed in; smooth downscaling when the whole image is shown smaller
    this.stage.classList.toggle("mc-pixelated", scale >= 1);
    this._updateCursor();
    this.onChange(scale);
  }

  /** Viewport point (relative to the container's top left) -> image point [x, y]. */
  toImage(x, y) {
    return [(x - this.tx) / this.scale, (y - this.ty) / this.scale];
  }

  // ---- overlay, cursor, lasso outline -----------------------------------------------------

  setOpacity(opacity) { this.opacity = opacity; this.overlayVisible = true; this._applyOpacity(); }

  toggleOverlay() { this.overlayVisible = !this.overlayVisible; this._applyOpacity(); }

  _applyOpacity() {
    this.maskCanvas.style.opacity = this.overlayVisible ? String(this.opacity) : "0";
  }

  /** The round cursor of the current tool: {diameter (image px), dashed}, or null for none. */
  setCursor(spec) { this.cursorSpec = spec; this._updateCursor(); }

  _updateCursor() {
    const spec = this.cursorSpec;
    const size = spec ? spec.diameter * this.scale : 0;
    this.cursor.style.width = this.cursor.style.height = `${size}px`;
    this.cursor.hidden = !spec;
    this.cursor.classList.toggle("mc-cursor-eraser", Boolean(spec && spec.dashed));
  }

  /** Centre the cursor on the viewport point (x, y). */
  moveCursor(x, y) {
    this.cursor.style.transform = `translate(${x}px, ${y}px) translate(-50%, -50%)`;
  }

  showCursor(on) { this.cursor.classList.toggle("mc-cursor-on", on); }

  previewLasso(points, hover, cut) {
    if (!points) { this.lassoPath.setAttribute("points", ""); return; }
    let s = points.map((p) => `${p[0]},${p[1]}`).join(" ");
    if (hover) s += ` ${hover[0]},${hover[1]}`;
    if (points.length > 2 || hover) s += ` ${points[0][0]},${points[0][1]}`;
    this.lassoPath.setAttribute("points", s);
    this.lassoPath.classList.toggle("mc-cut", cut);
  }

  // ---- a region on approval ---------------------------------------------------------------

  /** The image's RGBA pixels at its true size (read from the image canvas once). */
  imagePixels() {
    if (!this._pixels) {
      const ctx = this.imageCanvas.getContext("2d", { willReadFrequently: true });
      this._pixels = ctx.getImageData(0, 0, this.width, this.height).data;
    }
    return this._pixels;
  }

  /** Show the pixels i of `box` where test(i) on the region layer (cut: in the cutting colour),
   * now rather than at the next frame; only the union of the old and the new box is rewritten.
   * test null clears the layer. */
  showRegion(test, box, cut = false) {
    if (!this.regionData) this.regionData = new ImageData(this.width, this.height);
    const px = new Uint32Array(this.regionData.data.buffer);
    const old = this.regionBox;
    const shown = test && box ? box : null;
    const u = old && shown ? [Math.min(old[0], shown[0]), Math.min(old[1], shown[1]),
      Math.max(old[2], shown[2]), Math.max(old[3], shown[3])] : old || shown;
    if (!u) return;
    const colour = cut ? 0xd000a0ff : 0xd0ffdc00; // little-endian ABGR: amber to cut, cyan to add
    const w = this.width;
    for (let y = u[1]; y < u[3]; y++) {
      let i = y * w + u[0];
      const e = y * w + u[2];
      if (!shown || y < shown[1] || y >= shown[3]) { px.fill(0, i, e); continue; }
      for (; i < e; i++) {
        const x = i - y * w;
        px[i] = x >= shown[0] && x < shown[2] && test(i) ? colour : 0;
      }
    }
    this.regionBox = shown;
    this.regionCtx.putImageData(this.regionData, 0, 0, u[0], u[1], u[2] - u[0], u[3] - u[1]);
    this.regionCanvas.classList.toggle("mc-region-cut", Boolean(cut));
  }

  // ---- mask upload ------------------------------------------------------------------------

  /** Upload the changed pixels at the next animation frame (once, however many changes). */
  scheduleFlush() {
    if (this._frame || !this.raster.renderBox) return;
    this._frame = requestAnimationFrame(() => { this._frame = 0; this.flush(); });
  }

  /** Upload only the changed rectangle of the mask to the visible canvas, now. */
  flush() {
    const box = this.raster.renderBox;
    if (!box) return;
    this.raster.renderBox = null;
    const [x0, y0, x1, y1] = box;
    this.maskCtx.putImageData(this.raster.imageData, 0, 0, x0, y0, x1 - x0, y1 - y0);
  }

  destroy() {
    cancelAnimationFrame(this._frame);
    this._frame = 0;
    this.container.innerHTML = "";
  }
}
