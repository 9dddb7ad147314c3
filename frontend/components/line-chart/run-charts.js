// The charts of training runs that the run page and the compare page both draw: loss and
// accuracy per epoch (one run, or several overlaid), and robust accuracy against ε (PGD).
// Markup for the pages' `html` templates, built on lineChart (see line-chart.js for why these
// are functions, not elements).
// Usage: import { epochCharts, robustVsEpsChart } from "../components/line-chart/run-charts.js";
//   html`${epochCharts([{ name: "#3", epochs: [{ epoch: 1, train_loss: 2.1, ... }] }])}`

import { raw, html } from "../../lib/html.js";
import { PALETTE, epsLabel, lineChart } from "./line-chart.js";

/** lineChart output is markup we built (labels escaped inside); wrap it as trusted html. */
export function lineChartSafe(opts) {
  return raw(lineChart(opts));
}

/** What the per-epoch robust curve is: the cheap check, not the final evaluation. */
export function epochCheckLabel(epochs) {
  const steps = [...new Set(epochs.map((e) => e.robust_steps).filter(Number.isFinite))];
  return `PGD${steps.length === 1 ? `-${steps[0]}` : ""}, 1 restart, per epoch`;
}

/** One chart for the training loss, one for the accuracies; series: [{name, epochs: [metrics]}]. */
export function epochCharts(series) {
  const one = series.length === 1;
  const check = epochCheckLabel(series.flatMap((s) => s.epochs));
  const loss = series.map((s) => ({ name: one ? "train loss" : s.name, points: s.epochs.map((e) => [e.epoch, e.train_loss]) }));
  const acc = series.flatMap((s, i) => [
    { name: one ? "clean" : `${s.name} clean`, points: s.epochs.map((e) => [e.epoch, e.clean_accuracy]), colorIndex: i },
    { name: one ? `robust (${check})` : `${s.name} robust`, points: s.epochs.map((e) => [e.epoch, e.robust_accuracy]), dashed: true, colorIndex: i },
  ]);
  // several runs: a run's clean and robust curves share its colour
  if (!one) for (const s of acc) s.color = PALETTE[s.colorIndex % PALETTE.length];
  return html`<div class="charts">
    <div class="chart chart-loss">${lineChartSafe({ title: "Training loss", xLabel: "epoch", series: loss })}</div>
    <div class="chart chart-acc">${lineChartSafe({ title: one ? "Accuracy per epoch (robust: a cheap check at the run’s ε)" : `Accuracy per epoch (robust: ${check})`, xLabel: "epoch", yMin: 0, yMax: 1, series: acc })}</div>
  </div>`;
}

/** Robust accuracy against ε; series: [{name, pgd: {eps: accuracy}}]. */
export function robustVsEpsChart(series) {
  const s = series.map((x) => ({ name: x.name, points: Object.entries(x.pgd || {}).map(([e, a]) => [Number(e), a]) }));
  return lineChartSafe({ title: "Robust accuracy against ε (PGD)", xLabel: "ε", yMin: 0, yMax: 1, series: s, xFormat: epsLabel });
}
