// The binary mask: the alpha bytes of one ImageData (every pixel 0 or 255, never anything in
// between: shapes are rasterised here by pixel centre, with no canvas antialiasing), which
// drawing aid set each salient pixel (`owner`, one code per pixel: OWNER), the regions changed
// since the last screen upload and since the last commit, and the mask's decoding from /
// encoding to PNG. readBox / writeBox carry the owner codes (0 = not salient), so whole-stroke
// undo gives back who drew each pixel as well as the pixel.
// Usage:
//   import { MaskRaster } from "./raster.js";
//   const r = new MaskRaster(width, height, [255, 40, 90]);   // display colour of salient pixels
//   r.paintCode = OWNER.wand;  // who the following paint calls are attributed to
//   r.capsule(ax, ay, bx, by, radius, 255);  r.polygon(points, 0);   // paint / erase / fill / cut
//   r.decode(img);  const png = await r.toPngBlob();  r.toDataUrlSync();
//   r.provenance(earlierShares) -> {drawn: 0.7, wand: 0.3}   // share of salient pixels per tool

/** Owner codes: which drawing aid set a salient pixel; "loaded" pixels came from an earlier
 * revision (the server's or this browser's copy) and are attributed by its provenance. */
export const OWNER = { drawn: 1, wand: 2, superpixels: 3, refined: 4, proposal: 5, loaded: 6 };
const OWNER_NAMES = ["", "drawn", "wand", "superpixels", "refined", "proposal"];

/** Set or clear the alpha bytes of a width x height mask; RGB only colours the display. */
export class MaskRaster {
  constructor(width, height, rgb) {
    this.width = width;
    this.height = height;
    this.imageData = new ImageData(width, height);
    this.data = this.imageData.data;
    this.owner = new Uint8Array(width * height); // OWNER code of each salient pixel, 0 elsewhere
    this.paintCode = OWNER.drawn;
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
    const own = this.owner, code = value ? this.paintCode : 0;
    for (let y = y0; y < y1; y++) {
      const cy = y + 0.5;
      let row = (y * w + x0) * 4 + 3;
      for (let x = x0; x < x1; x++, row += 4) {
        const cx = x + 0.5;
        let t = len2 > 0 ? ((cx - ax) * dx + (cy - ay) * dy) / len2 : 0;
        if (t < 0) t = 0; else if (t > 1) t = 1;
        const ex = ax + t * dx - cx, ey = ay + t * dy - cy;
        if (ex * ex + ey * ey <= r2) { d[row] = value; own[row >> 2] = code; }
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
    const own = this.owner, code = value ? this.paintCode : 0;
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
        own.fill(code, y * w + xa, y * w + xb);
        if (xa < bx0) bx0 = xa;
        if (xb > bx1) bx1 = xb;
      }
    }
    if (bx0 < bx1) this._touch(bx0, yStart, bx1, yEnd + 1);
  }

  /** Copy the owner codes of a box (0 = not salient) into a new Uint8Array. */
  readBox([x0, y0, x1, y1]) {
    const w = this.width, bw = x1 - x0, out = new Uint8Array(bw * (y1 - y0));
    for (let y = y0, o = 0; y < y1; y++, o += bw) out.set(this.owner.subarray(y * w + x0, y * w + x1), o);
    return out;
  }

  /** Write owner codes into a box: the pixel is salient where the code is not 0. */
  writeBox([x0, y0, x1, y1], bytes) {
    const w = this.width, bw = x1 - x0, d = this.data, own = this.owner;
    for (let y = y0, o = 0; y < y1; y++) {
      let i = (y * w + x0) * 4 + 3;
      own.set(bytes.subarray(o, o + bw), y * w + x0);
      for (let x = 0; x < bw; x++, i += 4) d[i] = bytes[o++] ? 255 : 0;
    }
    this._touch(x0, y0, x1, y1);
  }

  /** Set the pixels (flat indices idx[from..to)) to value within the box they lie in. */
  setPixels(idx, from, to, value, box) {
    const d = this.data, own = this.owner, code = value ? this.paintCode : 0, a = value ? 255 : 0;
    for (let k = from; k < to; k++) { const i = idx[k]; d[i * 4 + 3] = a; own[i] = code; }
    if (to > from) this._touch(box[0], box[1], box[2], box[3]);
  }

  /** Set every pixel of the box where keep(i) (i: flat index) is true to value. */
  fillWhere([x0, y0, x1, y1], keep, value) {
    const w = this.width, d = this.data, own = this.owner, code = value ? this.paintCode : 0, a = value ? 255 : 0;
    let any = false;
    for (let y = y0; y < y1; y++) {
      for (let i = y * w + x0, e = y * w + x1; i < e; i++) {
        if (keep(i)) { d[i * 4 + 3] = a; own[i] = code; any = true; }
      }
    }
    if (any) this._touch(x0, y0, x1, y1);
  }

  /** The wand's band of levels (lo, hi] within box: set to value (255 fill, 0 cut) or, with
   * value null, given back their committed owner codes (a narrowed region). One pass. */
  wandBand([x0, y0, x1, y1], level, lo, hi, value, committed) {
    const w = this.width, d = this.data, own = this.owner, code = value ? this.paintCode : 0;
    for (let y = y0; y < y1; y++) {
      for (let i = y * w + x0, e = y * w + x1; i < e; i++) {
        const l = level[i];
        if (l <= lo || l > hi) continue;
        const c = value === null ? committed[i] : code;
        own[i] = c;
        d[i * 4 + 3] = c ? 255 : 0;
      }
    }
    this._touch(x0, y0, x1, y1);
  }

  /** Share of the salient pixels each drawing aid set, e.g. {drawn: 0.75, wand: 0.25} ({} when
   * empty); pixels of an earlier revision are split by its shares (`earlier`; none: drawn). */
  provenance(earlier) {
    const counts = new Float64Array(OWNER_NAMES.length + 1);
    const own = this.owner;
    for (let i = 0; i < own.length; i++) counts[own[i]]++;
    let total = 0;
    for (let c = 1; c < counts.length; c++) total += counts[c];
    if (!total) return {};
    const shares = {};
    const add = (name, n) => { if (n > 0) shares[name] = (shares[name] || 0) + n / total; };
    for (let c = 1; c < OWNER_NAMES.length; c++) add(OWNER_NAMES[c], counts[c]);
    const loaded = counts[OWNER.loaded];
    const base = earlier && Object.keys(earlier).length ? earlier : { drawn: 1 };
    const baseSum = Object.values(base).reduce((s, v) => s + v, 0) || 1;
    for (const [name, share] of Object.entries(base)) add(name, (loaded * share) / baseSum);
    for (const k of Object.keys(shares)) shares[k] = Math.round(shares[k] * 10000) / 10000;
    return shares;
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
    const d = this.data, own = this.owner;
    for (let i = 0; i < src.length; i += 4) {
      const on = hasAlpha ? src[i + 3] >= 128 : src[i] >= 128;
      d[i + 3] = on ? 255 : 0;
      own[i >> 2] = on ? OWNER.loaded : 0;
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
