// Regions the assisted tools select, computed once so that adjusting them is cheap:
//   toleranceMap   the magic wand's: for every pixel, the smallest colour tolerance at which it
//                  joins the seed's connected region. Changing the tolerance is then one
//                  threshold over a box (the live preview), never a new flood fill.
//   SuperpixelIndex the superpixel brush's: the pixels of every label, grouped, with their box.
// Usage: import { toleranceMap, SuperpixelIndex } from "./regions.js";
//   const m = toleranceMap(rgba, width, height, seedIndex);  m.level[i] <= tol;  m.box(tol)
//   const sp = new SuperpixelIndex(labels, count, width);  sp.pixels, sp.start[l], sp.box(l)

/**
 * The wand's tolerance map from the seed pixel: level[i] is the least t such that pixel i is
 * 4-connected to the seed through pixels whose colour differs from the seed's by at most t
 * (the largest difference of the R, G and B channels, 0..255). A minimax shortest path: a
 * bucket queue over the 256 levels, where every pixel is queued once (the level it is queued at
 * can only grow as the search goes on, so the first is the least).
 * @param {Uint8ClampedArray} rgba  the image's pixels, width x height x 4
 * @returns {{level: Uint8Array, box: (tol: number) => number[] | null}}
 */
export function toleranceMap(rgba, width, height, seed) {
  const n = width * height;
  const level = new Uint8Array(n);
  const seen = new Uint8Array(n);
  const next = new Int32Array(n);
  const head = new Int32Array(256).fill(-1);
  // boxes[4 * t ...] = x0, y0, x1, y1 of the pixels at exactly level t
  const boxes = new Int32Array(256 * 4);
  for (let t = 0; t < 256; t++) { boxes[4 * t] = width; boxes[4 * t + 1] = height; }
  const s4 = seed * 4;
  const r0 = rgba[s4], g0 = rgba[s4 + 1], b0 = rgba[s4 + 2];
  const diff = (i) => {
    const p = i * 4;
    let d = rgba[p] - r0; if (d < 0) d = -d;
    let e = rgba[p + 1] - g0; if (e < 0) e = -e;
    if (e > d) d = e;
    e = rgba[p + 2] - b0; if (e < 0) e = -e;
    return e > d ? e : d;
  };
  const push = (i, t) => { seen[i] = 1; level[i] = t; next[i] = head[t]; head[t] = i; };
  push(seed, 0);
  for (let t = 0; t < 256; t++) {
    const bo = 4 * t;
    while (head[t] !== -1) {
      const i = head[t];
      head[t] = next[i];
      const y = (i / width) | 0, x = i - y * width;
      if (x < boxes[bo]) boxes[bo] = x;
      if (y < boxes[bo + 1]) boxes[bo + 1] = y;
      if (x + 1 > boxes[bo + 2]) boxes[bo + 2] = x + 1;
      if (y + 1 > boxes[bo + 3]) boxes[bo + 3] = y + 1;
      let j;
      if (x > 0 && !seen[j = i - 1]) { const d = diff(j); push(j, d > t ? d : t); }
      if (x + 1 < width && !seen[j = i + 1]) { const d = diff(j); push(j, d > t ? d : t); }
      if (y > 0 && !seen[j = i - width]) { const d = diff(j); push(j, d > t ? d : t); }
      if (y + 1 < height && !seen[j = i + width]) { const d = diff(j); push(j, d > t ? d : t); }
    }
  }
  // cumulative: the box of every pixel at level <= t
  for (let t = 1; t < 256; t++) {
    const a = 4 * (t - 1), b = 4 * t;
    if (boxes[a] < boxes[b]) boxes[b] = boxes[a];
    if (boxes[a + 1] < boxes[b + 1]) boxes[b + 1] = boxes[a + 1];
    if (boxes[a + 2] > boxes[b + 2]) boxes[b + 2] = boxes[a + 2];
    if (boxes[a + 3] > boxes[b + 3]) boxes[b + 3] = boxes[a + 3];
  }
  return {
    level,
    seed,
    box(tol) {
      const b = 4 * Math.max(0, Math.min(255, tol));
      return boxes[b + 2] > boxes[b] ? [boxes[b], boxes[b + 1], boxes[b + 2], boxes[b + 3]] : null;
    },
  };
}

/** The pixels of every superpixel, grouped by label (counting sort), and each label's box. */
export class SuperpixelIndex {
  /** @param {Uint16Array|Int32Array} labels  one label per pixel, 0..count-1, row-major */
  constructor(labels, count, width) {
    this.labels = labels;
    this.count = count;
    this.width = width;
    const start = new Int32Array(count + 1);
    for (let i = 0; i < labels.length; i++) start[labels[i] + 1]++;
    for (let l = 0; l < count; l++) start[l + 1] += start[l];
    const fill = start.slice(0, count);
    const pixels = new Int32Array(labels.length);
    const boxes = new Int32Array(count * 4);
    for (let l = 0; l < count; l++) { boxes[4 * l] = width; boxes[4 * l + 1] = 1 << 30; }
    for (let i = 0; i < labels.length; i++) {
      const l = labels[i];
      pixels[fill[l]++] = i;
      const y = (i / width) | 0, x = i - y * width, b = 4 * l;
      if (x < boxes[b]) boxes[b] = x;
      if (y < boxes[b + 1]) boxes[b + 1] = y;
      if (x + 1 > boxes[b + 2]) boxes[b + 2] = x + 1;
      if (y + 1 > boxes[b + 3]) boxes[b + 3] = y + 1;
    }
    this.start = start;
    this.pixels = pixels;
    this.boxes = boxes;
  }

  box(l) { const b = 4 * l; return [this.boxes[b], this.boxes[b + 1], this.boxes[b + 2], this.boxes[b + 3]]; }
}
