// The binary mask: the alpha bytes of one ImageData (every pixel 0 or 255, never anything in
// between: shapes are rasterised here by pixel centre, with no canvas antialiasing), the
// regions changed since the last screen upload and since the last commit, and the mask's
// decoding from / encoding to PNG.
// Usage:
//   import { MaskRaster } from "./raster.js";
//   const r = new MaskRaster(width, height, [255, 40, 90]);   // display colour of salient pixels
//   r.capsule(ax, ay, bx, by, radius, 255);  r.polygon(points, 0);   // paint / erase / fill / cut
//   r.decode(img);  const png = await r.toPngBlob();  r.toDataUrlSync();

/** Set or clear the alpha bytes of a width x height mask; RGB only colours the display. */
export class MaskRaster {
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

  /** Set every pixel whose centre lies within r of segment (ax,ay)-(bx,by): paint (255) or erase (0). */
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

  /** Display colour [r, g, b] of every pixel (the saved PNG is always white + alpha). */
  setColor(rgb) {
    const d = this.data;
    for (let i = 0; i < d.length; i += 4) { d[i] = rgb[0]; d[i + 1] = rgb[1]; d[i + 2] = rgb[2]; }
    this.renderBox = [0, 0, this.width, this.height];
  }

  /** Replace the whole mask from a decoded PNG (drawn at width x height): salient where
   * alpha >= 128 if the PNG has transparency, else where grey >= 128. */
  decode(img) {
    const c = document.createElement("canvas");
    c.width = this.width;
    c.height = this.height;
    const ctx = c.getContext("2d", { willReadFrequently: true });
    ctx.imageSmoothingEnabled = false;
    ctx.drawImage(img, 0, 0, this.width, this.height);
    const src = ctx.getImageData(0, 0, this.width, this.height).data;
    let hasAlpha = false;
    for (let i = 3; i < src.length; i += 4) if (src[i] < 128) { hasAlpha = true; break; }
    const d = this.data;
    for (let i = 0; i < src.length; i += 4) {
      const on = hasAlpha ? src[i + 3] >= 128 : src[i] >= 128;
      d[i + 3] = on ? 255 : 0;
    }
    this.renderBox = [0, 0, this.width, this.height];
    this.strokeBox = null;
  }

  /** The mask as a canvas: white with alpha 255 where salient, transparent elsewhere. */
  toCanvas() {
    const c = document.createElement("canvas");
    c.width = this.width;
    c.height = this.height;
    const out = new ImageData(this.width, this.height);
    const o32 = new Uint32Array(out.data.buffer);
    const d = this.data;
    for (let i = 0, p = 3; i < o32.length; i++, p += 4) if (d[p]) o32[i] = 0xffffffff;
    c.getContext("2d").putImageData(out, 0, 0);
    return c;
  }

  /** PNG of the mask (see toCanvas); the pixels are snapshot now, encoding happens later. */
  toPngBlob() {
    const c = this.toCanvas();
    return new Promise((resolve, reject) =>
      c.toBlob((b) => (b ? resolve(b) : reject(new Error("PNG encoding failed"))), "image/png"));
  }

  /** Same PNG as a data: URL, synchronously (for page unload). */
  toDataUrlSync() { return this.toCanvas().toDataURL("image/png"); }
}
