// A small SVG line chart: several series over one x axis, with axes, ticks and a legend; and
// an interactive wrapper for live curves (hover values, a smoothing slider, log scale, zoom).
// Usage: import { lineChart, createChart } from "../components/line-chart/line-chart.js";
//   el.innerHTML = lineChart({ title: "Accuracy", xLabel: "epoch", yMin: 0, yMax: 1,
//     series: [{ name: "clean", points: [[1, 0.5], [2, 0.7]] }] });
//   const chart = createChart(host, { title: "Training loss", xLabel: "epoch", smoothing: true });
//   chart.update(series);   // again whenever points arrive; chart.destroy() on leaving
// lineChart returns SVG markup (a string); every label is escaped. Points with a non-finite y
// are skipped. Series options: color, dashed, dots (false: no point markers, for dense
// per-batch series), smooth (createChart's slider applies to it; the raw points stay faint).
// Margins grow to fit the tick labels (an "51/255" at the right edge is never clipped) and
// the legend wraps onto more rows rather than running off the chart.
// lineChart is not a custom element, on purpose: it is a pure function of its options that the
// pages splice into the `html` templates they re-render whole on every poll (compare.js, the
// inequality panel), and its options carry a function (`xFormat`, e.g. epsLabel) and arrays of
// points. createChart owns its host element instead (run.js keeps it across updates, so that
// the zoom, the slider and the hover survive new points). The pages call ensureChartStyles()
// on mount (line-chart.css also holds the shared styles of the runs pages).

import { escapeHtml } from "../../lib/html.js";
import { greyLevels } from "../../lib/format.js";
import { linkStylesheet } from "../../lib/styles.js";

export const PALETTE = ["#2f6fde", "#d9480f", "#2b8a3e", "#7048e8", "#c2255c", "#e67700", "#0b7285", "#5c940d"];
const CHAR_PX = 6.6; // width of one character of the 11 px tick font, a little generous

function niceTicks(lo, hi, count = 5) {
  if (!(hi > lo)) return [lo];
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) || raw;
  const out = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(+v.toFixed(10));
  return out;
}

/** Ticks of a log axis between lo and hi (> 0): 1, 2, 5 times the powers of ten. */
function logTicks(lo, hi) {
  const out = [];
  for (let d = Math.floor(Math.log10(lo)); d <= Math.ceil(Math.log10(hi)); d++) {
    for (const m of [1, 2, 5]) {
      const v = m * 10 ** d;
      if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) out.push(+v.toPrecision(6));
    }
  }
  return out.length >= 2 ? out : niceTicks(lo, hi);
}

export function fmt(v) {
  if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v * 100) / 100);
  return v.toPrecision(3).replace(/\.?0+$/, "");
}

const finitePoints = (s) => s.points.filter(([x, y]) => Number.isFinite(x) && Number.isFinite(y));

/** Exponential moving average with TensorBoard's debiasing: weight 0 leaves the points. */
export function smooth(points, weight) {
  if (!(weight > 0)) return points;
  let acc = 0;
  return points.map(([x, y], i) => {
    acc = acc * weight + (1 - weight) * y;
    return [x, acc / (1 - weight ** (i + 1))];
  });
}

/** Where everything goes: margins, scales and ticks (lineChart draws it; createChart inverts
 * it to find the point under the pointer). Null when there is nothing to draw. */
export function chartLayout({ series = [], title = "", xLabel = "", yLabel = "", yMin, yMax,
  width = 460, height = 260, xFormat = fmt, xRange = null, yLog = false } = {}) {
  let pts = series.flatMap(finitePoints);
  if (yLog) pts = pts.filter(([, y]) => y > 0);
  if (!pts.length) return null;
  let x0 = Math.min(...pts.map((p) => p[0]));
  let x1 = Math.max(...pts.map((p) => p[0]));
  if (xRange) [x0, x1] = xRange;
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  const inView = pts.filter(([x]) => x >= x0 && x <= x1);
  const ys = (inView.length ? inView : pts).map((p) => p[1]);
  let y0 = yLog ? Math.min(...ys) : yMin ?? Math.min(...ys);
  let y1 = yLog ? Math.max(...ys) : yMax ?? Math.max(...ys);
  if (yLog) {
    if (y0 === y1) { y0 /= 2; y1 *= 2; }
  } else if (y0 === y1) { y0 -= 0.5; y1 += 0.5; }
  const yTicks = yLog ? logTicks(y0, y1) : niceTicks(y0, y1);
  const xs = [...new Set(pts.map((p) => p[0]).filter((x) => x >= x0 && x <= x1))].sort((a, b) => a - b);
  const xTicks = xs.length && xs.length <= 10 && !xRange ? xs : niceTicks(x0, x1, 8);
  const xTickText = xTicks.map((t) => String(xFormat(t)));
  const yTickText = yTicks.map((t) => fmt(t));
  // room for the widest y tick, half of the first and last x ticks, the legend's rows
  const legendRows = [];
  let rowWidth = Infinity;
  const legendSpace = width - 20;
  for (const [i, s] of series.entries()) {
    const w = 24 + CHAR_PX * String(s.name).length;
    if (rowWidth + w > legendSpace) { legendRows.push([]); rowWidth = 0; }
    legendRows[legendRows.length - 1].push({ i, s, x: rowWidth });
    rowWidth += w;
  }
  const titleH = title ? 24 : 6;
  const m = {
    l: Math.max(48, 14 + CHAR_PX * Math.max(...yTickText.map((t) => t.length)) + (yLabel ? 14 : 0),
      CHAR_PX * (xTickText[0] || "").length / 2 + 4),
    r: Math.max(12, (CHAR_PX * (xTickText[xTickText.length - 1] || "").length) / 2 + 4),
    t: titleH + 16 * legendRows.length + 6,
    b: 40,
  };
  const w = width - m.l - m.r;
  const h = height - m.t - m.b;
  const ly = (y) => (yLog ? Math.log10(y) : y);
  const sx = (x) => m.l + ((x - x0) / (x1 - x0)) * w;
  const sy = (y) => m.t + h - ((ly(y) - ly(y0)) / (ly(y1) - ly(y0))) * h;
  return { m, w, h, x0, x1, y0, y1, sx, sy, xTicks, xTickText, yTicks, yTickText, legendRows, titleH, width, height };
}

/** SVG markup for the chart (width x height in CSS pixels). */
export function lineChart(opts = {}) {
  const { series = [], title = "", xLabel = "", yLabel = "", width = 460, height = 260, yLog = false } = opts;
  const xFormat = opts.xFormat || fmt;
  const parts = [`<svg class="line-chart" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${width} ${height}"
    width="${width}" height="${height}" role="img" aria-label="${escapeHtml(title || yLabel)}">`];
  if (title) {
    // a title longer than the chart is fitted to it (squeezed, never cut)
    const room = width - 20;
    const fit = title.length * CHAR_PX * 1.2 > room ? ` textLength="${room}" lengthAdjust="spacingAndGlyphs"` : "";
    parts.push(`<text x="10" y="16" class="lc-title"${fit}>${escapeHtml(title)}</text>`);
  }
  const L = chartLayout(opts);
  if (!L) {
    parts.push(`<text x="${width / 2}" y="${height / 2}" text-anchor="middle" class="lc-empty">No data yet</text></svg>`);
    return parts.join("");
  }
  const { m, w, h, sx, sy, x0, x1 } = L;
  parts.push(`<defs><clipPath id="lc-clip-${m.l}-${m.t}-${w}-${h}"><rect x="${m.l}" y="${m.t - 4}" width="${w}" height="${h + 8}"/></clipPath></defs>`);
  L.yTicks.forEach((t, i) => {
    parts.push(`<line x1="${m.l}" x2="${m.l + w}" y1="${sy(t)}" y2="${sy(t)}" class="lc-grid"/>`,
      `<text x="${m.l - 6}" y="${sy(t) + 4}" text-anchor="end" class="lc-tick">${escapeHtml(L.yTickText[i])}</text>`);
  });
  L.xTicks.forEach((t, i) => {
    parts.push(`<text x="${sx(t)}" y="${m.t + h + 16}" text-anchor="middle" class="lc-tick">${escapeHtml(L.xTickText[i])}</text>`);
  });
  parts.push(`<line x1="${m.l}" x2="${m.l}" y1="${m.t}" y2="${m.t + h}" class="lc-axis"/>`,
    `<line x1="${m.l}" x2="${m.l + w}" y1="${m.t + h}" y2="${m.t + h}" class="lc-axis"/>`);
  if (xLabel) parts.push(`<text x="${m.l + w / 2}" y="${height - 6}" text-anchor="middle" class="lc-label">${escapeHtml(xLabel)}</text>`);
  if (yLabel) parts.push(`<text transform="translate(12 ${m.t + h / 2}) rotate(-90)" text-anchor="middle" class="lc-label">${escapeHtml(yLabel)}</text>`);
  const clip = `clip-path="url(#lc-clip-${m.l}-${m.t}-${w}-${h})"`;
  const path = (p) => p.map(([x, y], j) => `${j ? "L" : "M"}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join("");
  series.forEach((s, i) => {
    const color = s.color || PALETTE[i % PALETTE.length];
    let p = finitePoints(s).sort((a, b) => a[0] - b[0]);
    if (yLog) p = p.filter(([, y]) => y > 0);
    if (!p.length) return;
    const shown = s.smoothed ? s.smoothed.filter(([, y]) => !yLog || y > 0) : p;
    if (s.smoothed) {
      parts.push(`<path d="${path(p)}" fill="none" stroke="${color}" stroke-width="1" opacity="0.3" class="lc-raw" ${clip}/>`);
    }
    parts.push(`<path d="${path(shown)}" fill="none" stroke="${color}" stroke-width="2" class="lc-line${s.dots === false ? " lc-dense" : ""}" data-series="${escapeHtml(s.name)}"
      ${s.dashed ? 'stroke-dasharray="5 4"' : ""} ${clip}/>`);
    if (s.dots !== false) {
      for (const [x, y] of p) {
        if (x < x0 || x > x1) continue;
        parts.push(`<circle cx="${sx(x).toFixed(1)}" cy="${sy(y).toFixed(1)}" r="3" fill="${color}"><title>${escapeHtml(s.name)}: ${escapeHtml(xFormat(x))} → ${escapeHtml(fmt(y))}</title></circle>`);
      }
    }
    if (s.band) {
      const up = s.band.map(([x, , hi]) => [x, hi]).sort((a, b) => a[0] - b[0]);
      const dn = s.band.map(([x, lo]) => [x, lo]).sort((a, b) => b[0] - a[0]);
      parts.push(`<path d="${path([...up, ...dn])}Z" fill="${color}" opacity="0.15" stroke="none" ${clip}/>`);
    }
  });
  L.legendRows.forEach((row, r) => {
    const ly = L.titleH + 4 + 16 * r;
    for (const { i, s, x } of row) {
      const color = s.color || PALETTE[i % PALETTE.length];
      parts.push(`<rect x="${10 + x}" y="${ly}" width="10" height="10" fill="${color}"/>`,
        `<text x="${24 + x}" y="${ly + 9}" class="lc-legend">${escapeHtml(s.name)}</text>`);
    }
  });
  parts.push("</svg>");
  return parts.join("");
}

/** An interactive chart in `host`: the values under the pointer, a smoothing slider (for the
 * series marked smooth), a log scale and a zoom (drag across the plot; double-click or
 * "Reset zoom" to undo). Its settings are remembered in localStorage under `storageKey`. */
export function createChart(host, { storageKey = "chart", smoothing = false, ...opts } = {}) {
  const saved = (() => { try { return JSON.parse(localStorage.getItem(`${storageKey}.view`) || "{}"); } catch { return {}; } })();
  const view = { smoothing: Number(saved.smoothing) || 0, yLog: !!saved.yLog, xRange: null };
  let series = [];
  let layout = null;
  let drag = null;
  host.classList.add("lc-live");
  host.innerHTML = `<div class="lc-tools">
      ${smoothing ? `<label>Smoothing <input type="range" class="lc-smoothing" min="0" max="0.98" step="0.02" value="${view.smoothing}">
        <output class="lc-smoothing-value">${view.smoothing.toFixed(2)}</output></label>` : ""}
      <label><input type="checkbox" class="lc-log" ${view.yLog ? "checked" : ""}> log scale</label>
      <button type="button" class="lc-reset" hidden>Reset zoom</button>
      <span class="muted lc-hint">drag to zoom</span></div>
    <div class="lc-plot"><div class="lc-svg"></div><div class="lc-guide" hidden></div><div class="lc-select" hidden></div>
      <div class="lc-tip" role="status" hidden></div></div>`;
  const $ = (s) => host.querySelector(s);
  const plot = $(".lc-plot");
  const save = () => localStorage.setItem(`${storageKey}.view`, JSON.stringify({ smoothing: view.smoothing, yLog: view.yLog }));

  function draw() {
    const drawn = series.map((s) => (s.smooth && view.smoothing > 0
      ? { ...s, smoothed: smooth(finitePoints(s).sort((a, b) => a[0] - b[0]), view.smoothing) } : s));
    const o = { ...opts, series: drawn, yLog: view.yLog, xRange: view.xRange };
    layout = chartLayout(o);
    $(".lc-svg").innerHTML = lineChart(o);
    $(".lc-reset").hidden = !view.xRange;
  }

  /** Data x under a client x position (the SVG may be drawn smaller than its viewBox). */
  function dataX(clientX) {
    const svg = $(".lc-svg svg");
    if (!svg || !layout) return null;
    const box = svg.getBoundingClientRect();
    const px = ((clientX - box.left) / box.width) * layout.width;
    const { m, w, x0, x1 } = layout;
    if (px < m.l || px > m.l + w) return null;
    return x0 + ((px - m.l) / w) * (x1 - x0);
  }
  const toClient = (x) => {
    const box = $(".lc-svg svg").getBoundingClientRect();
    return (layout.sx(x) / layout.width) * box.width + (box.left - plot.getBoundingClientRect().left);
  };

  function hover(e) {
    const x = dataX(e.clientX);
    const tip = $(".lc-tip");
    const guide = $(".lc-guide");
    if (drag) {
      const sel = $(".lc-select");
      const a = Math.min(drag.px, e.clientX) - plot.getBoundingClientRect().left;
      sel.style.left = `${a}px`;
      sel.style.width = `${Math.abs(e.clientX - drag.px)}px`;
      sel.hidden = false;
    }
    if (x === null) { tip.hidden = true; guide.hidden = true; return; }
    const xFormat = opts.xFormat || fmt;
    const rows = [];
    let at = null;
    series.forEach((s, i) => {
      const p = finitePoints(s);
      if (!p.length) return;
      const pts = s.smooth && view.smoothing > 0 ? smooth([...p].sort((a, b) => a[0] - b[0]), view.smoothing) : p;
      let best = pts[0];
      for (const q of pts) if (Math.abs(q[0] - x) < Math.abs(best[0] - x)) best = q;
      if (best[0] < layout.x0 || best[0] > layout.x1) return;
      if (at === null || Math.abs(best[0] - x) < Math.abs(at - x)) at = best[0];
      rows.push(`<div><span class="lc-swatch" style="background:${s.color || PALETTE[i % PALETTE.length]}"></span>${escapeHtml(s.name)}: <b>${escapeHtml(fmt(best[1]))}</b> <span class="muted">at ${escapeHtml(String(xFormat(best[0])))}</span></div>`);
    });
    if (!rows.length) { tip.hidden = true; guide.hidden = true; return; }
    tip.innerHTML = rows.join("");
    tip.hidden = false;
    const left = toClient(at);
    guide.style.left = `${left}px`;
    guide.hidden = false;
    const plotW = plot.getBoundingClientRect().width;
    tip.style.left = `${Math.min(left + 10, Math.max(0, plotW - tip.offsetWidth - 4))}px`;
  }

  plot.addEventListener("pointermove", hover);
  plot.addEventListener("pointerleave", () => { $(".lc-tip").hidden = true; $(".lc-guide").hidden = true; });
  plot.addEventListener("pointerdown", (e) => {
    const x = dataX(e.clientX);
    if (x === null || e.button !== 0) return;
    drag = { x, px: e.clientX };
    plot.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  plot.addEventListener("pointerup", (e) => {
    if (!drag) return;
    const x = dataX(e.clientX) ?? (e.clientX > drag.px ? layout.x1 : layout.x0);
    const wide = Math.abs(e.clientX - drag.px) > 6;
    if (wide && x !== drag.x) { view.xRange = [Math.min(x, drag.x), Math.max(x, drag.x)]; draw(); }
    drag = null;
    $(".lc-select").hidden = true;
  });
  plot.addEventListener("dblclick", () => { view.xRange = null; draw(); });
  $(".lc-reset").addEventListener("click", () => { view.xRange = null; draw(); });
  $(".lc-log").addEventListener("change", (e) => { view.yLog = e.target.checked; save(); draw(); });
  if (smoothing) {
    $(".lc-smoothing").addEventListener("input", (e) => {
      view.smoothing = Number(e.target.value);
      $(".lc-smoothing-value").textContent = view.smoothing.toFixed(2);
      save();
      draw();
    });
  }
  draw();
  return {
    update(next) { series = next; draw(); },
    get view() { return { ...view }; },
    destroy() { host.innerHTML = ""; },
  };
}

/** Load this component's stylesheet once (the pages that use it call this on mount). */
export function ensureChartStyles() {
  linkStylesheet(new URL("./line-chart.css", import.meta.url));
}

/** "8/255" style label of an epsilon in pixel units (lib/format.js's greyLevels). */
export function epsLabel(eps) {
  return greyLevels(eps);
}
