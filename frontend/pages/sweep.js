// A sweep (#/sweeps/{id}, GET /api/sweeps/{id}): for each figure of the final evaluations
// (clean accuracy, AutoAttack's headline and the accuracy after each of its attacks, PGD at each
// ε, salience agreement where measured) each arm's mean and 95 % interval over its seeds against
// the swept value, as a chart and a sortable table, with the seeds behind each point; each arm
// minus the baseline arm paired by seed (Student t and bootstrap intervals) and the verdict the
// API words at the margin the researcher sets (?margin=, in points; kept in the page's address);
// failed and cancelled runs counted and left out; every run with its state; CSV and JSON
// exports. It polls (lib/poll.js) while runs are unfinished.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { MISSING, dateTime, percent, plural, points } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import { start as poll } from "../lib/poll.js";
import { configEntries, configValue, loadRunSettings, settingOf } from "../lib/run-settings.js";
import { stateBadge } from "../lib/run-display.js";
import { linkStylesheet } from "../lib/styles.js";
import { PALETTE, ensureChartStyles } from "../components/line-chart/line-chart.js";
import { lineChartSafe } from "../components/line-chart/run-charts.js";

const POLL_MS = 3000;
const BASELINE_COLOR = "#5b6573";
const MARGIN_REFUSED = "a margin in points, above 0 and at most 100";

const labelOf = (name) => (settingOf(name) || { label: name }).label;
const interval = (low, high, show) => (low === null || high === null ? MISSING : `${show(low)} to ${show(high)}`);
// an empty cell that says why it is empty
const absent = (why) => html`<span class="muted absent">${why}</span>`;
// an interval, or why there is none (one value has no spread)
const span = (low, high, show, n) => (low === null || high === null ? absent(n === 1 ? "one seed" : "none") : interval(low, high, show));
const baselineText = (baseline) => Object.entries(baseline || {}).map(([k, v]) => `${labelOf(k)}: ${configValue(k, v)}`).join(", ");

/** How an arm reads: its swept values, or the baseline with what sets it apart. */
function armText(arm, table) {
  if (arm.baseline) return `baseline (${baselineText(table.baseline)})`;
  return table.axes.map((k) => configValue(k, arm.values[k])).join(", ");
}

function pageMarkup(margin) {
  return html`<section class="page wide sweep-page">
    <p><a href="#/runs">← All runs</a></p>
    <h1 class="sweep-title">Sweep</h1>
    <div class="sweep-head"></div>
    <div class="row sweep-tools">
      <label>Equivalence margin (± points)<input type="number" class="margin-input" name="margin" min="0" max="100" step="any"
        placeholder="none" value="${margin ?? ""}"><span class="field-error" data-for="margin"></span></label>
      <span class="spacer"></span><span class="sweep-exports"></span>
    </div>
    <p class="form-error sweep-error" role="alert"></p>
    <div class="sweep-body"><p class="muted">Loading…</p></div>
  </section>`;
}

function headMarkup(data) {
  const { sweep, table } = data;
  const arms = table.arms;
  const total = arms.reduce((s, a) => s + a.runs, 0);
  const count = (k) => arms.reduce((s, a) => s + a[k], 0);
  return html`
    <p class="sweep-what">Varies ${sweep.axes.map((a, i) => html`${i ? " × " : ""}<b>${labelOf(a.name)}</b> over
      ${a.values.map((v) => configValue(a.name, v)).join(", ")}`)};
      seeds ${sweep.seeds.join(", ")}; ${sweep.baseline ? html`baseline arm <b>${baselineText(sweep.baseline)}</b>` : "no baseline arm"}.
      <span class="muted">Created ${dateTime(sweep.created_at)}; ${sweep.in_flight} of its runs train at once.</span></p>
    <p class="sweep-status" data-finished="${data.finished}">
      <span class="runs-total">${plural(total, "run")}</span>: <span class="runs-succeeded">${count("succeeded")} succeeded</span>,
      <span class="runs-pending">${count("pending")} queued or running</span>,
      <span class="runs-failed">${table.left_out.failed} failed</span>, <span class="runs-cancelled">${table.left_out.cancelled} cancelled</span>
      <span class="muted">(failed and cancelled runs are left out of the statistics)</span>
      ${data.finished ? "" : html` · <span class="live">live: updated every ${POLL_MS / 1000} s until every run has ended</span>`}</p>
    <details class="sweep-base"><summary>Base configuration</summary>
      <table class="data kv">${configEntries(sweep.base).map((e) => html`<tr><td>${e.label}</td><td>${e.value}</td></tr>`)}</table></details>`;
}

function exportsMarkup(id, margin) {
  const q = (format, level) => `/api/sweeps/${id}/export?${new URLSearchParams({ format, level, ...(margin ? { margin } : {}) })}`;
  return html`Export: <a class="export-arms" href="${q("csv", "arms")}" download>CSV per arm</a> ·
    <a class="export-runs" href="${q("csv", "runs")}" download>CSV per run</a> ·
    <a class="export-json" href="${q("json", "arms")}" download>JSON</a>`;
}

/** Each arm's mean and interval of one figure against the first swept value (a line per value
 * of the second), the baseline as a dashed level across. */
function metricChart(table, key) {
  const [xName, lineName] = table.axes;
  const arms = table.arms.filter((a) => a.metrics[key]);
  const grid = arms.filter((a) => !a.baseline);
  const lines = new Map();
  for (const arm of grid) {
    const line = lineName === undefined ? "" : configValue(lineName, arm.values[lineName]);
    if (!lines.has(line)) lines.set(line, []);
    lines.get(line).push(arm);
  }
  const bandOf = (m, x) => (m.low === null ? [] : [[x, m.low, m.high]]);
  const orNull = (band) => (band.length ? band : null);
  const series = [...lines].map(([line, members], i) => ({
    name: lineName === undefined ? "mean (95 % interval)" : `${labelOf(lineName)} ${line}`,
    color: PALETTE[i % PALETTE.length],
    points: members.map((a) => [Number(a.values[xName]), a.metrics[key].mean]),
    band: orNull(members.flatMap((a) => bandOf(a.metrics[key], Number(a.values[xName])))),
  }));
  const xs = grid.map((a) => Number(a.values[xName]));
  const base = arms.find((a) => a.baseline);
  if (base && xs.length) {
    const m = base.metrics[key];
    const ends = [Math.min(...xs), Math.max(...xs)];
    series.push({ name: `baseline (${baselineText(table.baseline)})`, color: BASELINE_COLOR, dashed: true, dots: false,
      points: ends.map((x) => [x, m.mean]), band: m.low === null ? null : ends.map((x) => [x, m.low, m.high]) });
  }
  const ys = arms.flatMap((a) => [a.metrics[key].mean, a.metrics[key].low, a.metrics[key].high]).filter(Number.isFinite);
  const pad = 0.02;
  return lineChartSafe({
    title: table.labels[key], xLabel: xName ? labelOf(xName) : "", width: 520, height: 280,
    yMin: ys.length ? Math.max(0, Math.min(...ys) - pad) : 0, yMax: ys.length ? Math.min(1, Math.max(...ys) + pad) : 1,
    xFormat: (x) => configValue(xName, x), series,
  });
}

const SORTS = {
  arm: (a) => a.order,
  n: (a) => (a.m ? a.m.n : -1),
  mean: (a) => (a.m ? a.m.mean : -Infinity),
  diff: (a) => (a.p ? a.p.mean : -Infinity),
};

/** One figure's table: a row per arm, sorted as asked. */
function metricTable(table, key, sort) {
  const rows = table.arms.map((arm, order) => ({ arm, order, m: arm.metrics[key], p: arm.paired[key] }));
  const by = SORTS[sort.key] || SORTS.arm;
  rows.sort((a, b) => (by(a) - by(b)) * (sort.dir === "desc" ? -1 : 1) || a.order - b.order);
  const head = (k, text, cls = "") => html`<th class="${cls} sortable" data-sort="${k}" aria-sort="${sort.key === k ? (sort.dir === "desc" ? "descending" : "ascending") : "none"}">${text}${sort.key === k ? (sort.dir === "desc" ? " ▼" : " ▲") : ""}</th>`;
  const hasBaseline = table.arms.some((a) => a.baseline);
  return html`<table class="data sweep-table" data-metric="${key}">
    <thead><tr>${head("arm", table.axes.map(labelOf).join(" × ") || "arm")}${head("n", "seeds", "num")}${head("mean", "mean", "num")}<th class="num">95 % interval</th>
      ${hasBaseline ? html`${head("diff", "minus baseline (paired by seed)", "num")}<th class="num">95 % t interval</th><th class="num">95 % bootstrap</th><th>verdict</th>` : ""}</tr></thead>
    <tbody>${rows.map(({ arm, m, p }) => html`<tr data-arm="${arm.key}" class="${arm.baseline ? "baseline" : ""}">
      <td class="arm">${armText(arm, table)}</td>
      <td class="num seeds">${m ? html`<span class="n">n = ${m.n}</span> <span class="muted seed-list">(seeds ${arm.seeds.join(", ")})</span>` : html`<span class="muted">none yet</span>`}
        ${arm.pending ? html`<span class="muted pending">${arm.pending} to come</span>` : ""}
        ${arm.failed + arm.cancelled ? html`<span class="left-out">${arm.failed + arm.cancelled} failed or cancelled, left out</span>` : ""}</td>
      <td class="num mean">${m ? percent(m.mean) : absent(arm.pending ? "none yet" : "not measured")}</td>
      <td class="num interval">${m ? span(m.low, m.high, percent, m.n) : absent(arm.pending ? "none yet" : "not measured")}</td>
      ${hasBaseline ? (arm.baseline ? html`<td class="muted" colspan="4">the baseline</td>` : html`
        <td class="num diff">${p ? points(p.mean) : absent("not paired")}${p ? html` <span class="muted pairs">n = ${p.n}</span>` : ""}</td>
        <td class="num diff-t">${p ? span(p.low, p.high, points, p.n) : absent("not paired")}</td>
        <td class="num diff-boot">${p ? span(p.boot_low, p.boot_high, points, p.n) : absent("not paired")}</td>
        <td class="verdict" data-verdict="${p ? p.verdict : ""}">${p ? p.text : html`<span class="muted">no pairs yet</span>`}</td>`) : ""}
    </tr>`)}</tbody></table>`;
}

function runsTable(data) {
  const { table } = data;
  const arms = new Map(table.arms.map((a) => [a.key, a]));
  return html`<table class="data sweep-runs"><thead><tr><th>run</th><th>arm</th><th class="num">seed</th><th>state</th>
    ${table.metrics.map((k) => html`<th class="num">${table.labels[k]}</th>`)}</tr></thead>
    <tbody>${table.runs.map((r) => html`<tr data-run="${r.ref}" class="${r.state === "failed" || r.state === "cancelled" ? "left-out" : ""}">
      <td><a href="#/runs/${r.ref}">#${r.ref} ${data.run_names[String(r.ref)] || ""}</a></td>
      <td>${arms.has(r.arm) ? armText(arms.get(r.arm), table) : r.arm}</td><td class="num">${r.seed}</td><td>${stateBadge(r.state)}</td>
      ${table.metrics.map((k) => html`<td class="num">${figure(r, k)}</td>`)}</tr>`)}</tbody></table>`;
}

/** A run's figure, or why it has none: its state while unfinished, else not measured (the
 * agreement with human masks of a run without a mask set, say). */
function figure(run, key) {
  const v = run.figures[key];
  if (v !== undefined && v !== null) return percent(v);
  return absent(run.state === "succeeded" ? "not measured" : { queued: "waiting", held: "waiting" }[run.state] || run.state);
}

function bodyMarkup(data, sorts) {
  const { table } = data;
  if (!table.metrics.length) {
    return html`<p class="muted no-figures">No run of this sweep has finished yet: the figures appear here as runs end.</p>
      <h2>Runs</h2>${runsTable(data)}`;
  }
  const margin = table.margin_points;
  return html`<p class="muted">Means over the seeds of each arm with their 95 % Student t interval; each arm minus the
      baseline is taken seed by seed (the seeds both have). ${margin ? html`Equivalence is tested against ±${margin} points
      (two one-sided tests).` : "Set a margin to test equivalence: without one, an interval holding 0 only says the arm is not shown to differ."}</p>
    ${table.metrics.map((key) => html`<section class="sweep-metric" data-metric="${key}">
      <h2>${table.labels[key]}</h2>
      <div class="chart sweep-chart">${metricChart(table, key)}</div>
      ${metricTable(table, key, sorts.get(key) || { key: "arm", dir: "asc" })}
    </section>`)}
    <h2>Runs</h2>${runsTable(data)}`;
}

export async function mount(root, ctx) {
  ensureChartStyles();
  linkStylesheet(new URL("./sweep.css", import.meta.url));
  const id = ctx.params[0];
  let margin = ctx.query.get("margin") || null;
  render(root, pageMarkup(margin));
  const $ = (s) => root.querySelector(s);
  const sorts = new Map();
  let data = null;
  let alive = true;

  const draw = () => {
    if (!data) return;
    render($(".sweep-body"), bodyMarkup(data, sorts));
  };

  // Loads are numbered: an answer for an older margin that lands after a newer load began is dropped.
  let asked = 0;
  async function load() {
    const mine = ++asked;
    const q = margin ? `?${new URLSearchParams({ margin })}` : "";
    const got = await api(`/api/sweeps/${id}${q}`);
    if (!alive || mine !== asked) return false;
    data = got;
    $(".sweep-error").textContent = "";
    $(".sweep-title").textContent = `Sweep #${got.sweep.id}: ${got.sweep.name}`;
    render($(".sweep-head"), headMarkup(got));
    render($(".sweep-exports"), exportsMarkup(got.sweep.id, margin));
    draw();
    return !got.finished;
  }

  await loadRunSettings();
  let stop = () => {};
  const watch = () => {
    stop();
    stop = poll(load, POLL_MS, {
      onError: (err) => { if (alive) $(".sweep-error").textContent = `${err.message} (retrying)`; },
      onRecover: () => { if (alive) $(".sweep-error").textContent = ""; },
    });
  };

  $(".margin-input").addEventListener("change", (e) => {
    const raw = e.target.value.trim();
    const slot = $(".field-error[data-for=margin]");
    const n = Number(raw);
    if (raw !== "" && !(Number.isFinite(n) && n > 0 && n <= 100)) {
      slot.textContent = MARGIN_REFUSED;
      e.target.classList.add("invalid");
      return;
    }
    slot.textContent = "";
    e.target.classList.remove("invalid");
    margin = raw === "" ? null : raw;
    const query = margin ? `?${new URLSearchParams({ margin })}` : "";
    history.replaceState(null, "", `#/sweeps/${id}${query}`);
    watch();
  });
  root.addEventListener("click", (e) => {
    const th = e.target.closest("table.sweep-table th[data-sort]");
    if (!th) return;
    const key = th.closest("table").dataset.metric;
    const now = sorts.get(key) || { key: "arm", dir: "asc" };
    const col = th.dataset.sort;
    sorts.set(key, { key: col, dir: now.key === col && now.dir === "asc" ? "desc" : "asc" });
    draw();
  });
  watch();
  return () => { alive = false; stop(); };
}
