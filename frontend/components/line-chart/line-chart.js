// A small SVG line chart: several series over one x axis, with axes, ticks and a legend.
// Usage: import { lineChart } from "../components/line-chart/line-chart.js";
//   el.innerHTML = lineChart({ title: "Accuracy", xLabel: "epoch", yMin: 0, yMax: 1,
//     series: [{ name: "clean", points: [[1, 0.5], [2, 0.7]] }] });
// Returns SVG markup (a string); every label is escaped. Points with a non-finite y are skipped.
// Not a custom element, on purpose: it is a pure function of its options that the pages splice
// into the `html` templates they re-render whole on every poll (run.js, compare.js, the
// inequality panel), and its options carry a function (`xFormat`, e.g. epsLabel) and arrays of
// points that an element could only take as properties set after rendering, or as JSON in an
// attribute. The markup is the same either way; the pages call ensureChartStyles() on mount
// (line-chart.css also holds the shared styles of the runs pages).

import { escapeHtml } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";

export const PALETTE = ["#2f6fde", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#e67700", "#0b7285", "#5c940d"];

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

function fmt(v) {
  if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v * 100) / 100);
  return v.toPrecision(3).replace(/\.?0+$/, "");
}

/** SVG markup for the chart (width x height in CSS pixels). */
export function lineChart({ series = [], title = "", xLabel = "", yLabel = "", yMin, yMax,
  width = 460, height = 260, xFormat = fmt } = {}) {
  const m = { l: 48, r: 12, t: title ? 26 : 10, b: 40 };
  const pts = series.flatMap((s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)));
  const w = width - m.l - m.r;
  const h = height - m.t - m.b;
  const parts = [`<svg class="line-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}"
    width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title || yLabel)}">`];
  if (title) parts.push(`<text x="${m.l}" y="16" class="lc-title">${escapeHtml(title)}</text>`);
  if (!pts.length) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle" class="lc-empty">No data yet</text></svg>`);
    return parts.join("");
  }
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let y0 = yMin ?? Math.min(...pts.map((p) => p[1]));
  let y1 = yMax ?? Math.max(...pts.map((p) => p[1]));
  if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * w;
  const sy = (y) => m.t + h - ((y - y0) / (y1 - y0)) * h;
  for (const t of niceTicks(y0, y1)) {
    parts.push(`<line x1="${m.l}" x2="${m.l + w}" y1="${sy(t)}" y2="${sy(t)}" class="lc-grid"/>`,
      `<text x="${m.l - 6}" y="${sy(t) + 4}" text-anchor="end" class="lc-tick">${escapeHtml(fmt(t))}</text>`);
  }
  const xs = [...new Set(pts.map((p) => p[0]))].sort((a, b) => a - b);
  const xticks = xs.length <= 10 ? xs : niceTicks(x0, x1, 8);
  for (const t of xticks) {
    parts.push(`<text x="${sx(t)}" y="${m.t + h + 16}" text-anchor="middle" class="lc-tick">${escapeHtml(xFormat(t))}</text>`);
  }
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + h}" class="lc-axis"/>`,
    `<line x1="${m.l}" x2="${m.l + w}" y1="${m.t + h}" y2="${m.t + h}" class="lc-axis"/>`);
  if (xLabel) parts.push(`<text x="${m.l + w / 2}" y="${height - 6}" text-anchor="middle" class="lc-label">${escapeHtml(xLabel)}</text>`);
  if (yLabel) parts.push(`<text transform="translate(12 ${m.t + h / 2}) rotate(-90)" text-anchor="middle" class="lc-label">${escapeHtml(yLabel)}</text>`);
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    const p = s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y)).sort((a, b) => a[0] - b[0]);
    if (!p.length) return;
    const d = p.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
    parts.push(`<path d="${d}" fill="none" stroke="${color}" stroke-width="2" class="lc-line" data-series="${escapeHtml(s.name)}"
      ${s.dashed ? 'stroke-dasharray="5 4"' : ""}/>`);
    for (const [x, y] of p) {
      parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"><title>${escapeHtml(s.name)}: ${escapeHtml(xFormat(x))} → ${escapeHtml(fmt(y))}</title></circle>`);
    }
    if (s.band) {
      const up = s.band.map(([x, lo, hi]) => [x, hi]).sort((a, b) => a[0] - b[0]);
      const dn = s.band.map(([x, lo]) => [x, lo]).sort((a, b) => b[0] - a[0]);
      const bd = [...up, ...dn].map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("") + "Z";
      parts.push(`<path d="${bd}" fill="${color}" opacity="0.15" stroke="none"/>`);
    }
  });
  let lx = m.l + 6;
  const ly = m.t + 4;
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    parts.push(`<rect x="${lx}" y="${ly}" width="10" height="10" fill="${color}"/>`,
      `<text x="${lx + 14}" y="${ly + 9}" class="lc-legend">${escapeHtml(s.name)}</text>`);
    lx += 24 + 7 * String(s.name).length;
  });
  parts.push("</svg>");
  return parts.join("");
}

/** Load this component's stylesheet once (the pages that use it call this on mount). */
export function ensureChartStyles() {
  linkStylesheet(new URL("./line-chart.css", import.meta.url));
}

/** "8/255" style label of an epsilon in pixel units. */
export function epsLabel(eps) {
  const v = Number(eps) * 255;
  return `${Math.abs(v - Math.round(v)) < 1e-3 ? Math.round(v) : v.toFixed(2)}/255`;
}
