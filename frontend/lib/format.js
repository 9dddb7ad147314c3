// How numbers, shares, dates and durations read on every page (one place instead of a copy per
// page). A missing value (null, undefined, not a finite number) reads "–" where a table cell
// would otherwise be empty, "" where it is part of a sentence.
// Usage: import { percent, number, dateTime, duration } from "../lib/format.js";
//   percent(0.1234) -> "12.3%"   number(0.48, 3) -> "0.480"   duration(125) -> "2 min 5 s"
//   points(-0.031) -> "-3.1 pts" (a difference of shares)
//   greyLevels(8 / 255) -> "8/255"   bytes(1.5e9) -> "1.4 GiB"

export const MISSING = "–";

const finite = (v) => (v === null || v === undefined || v === "" ? NaN : Number(v));

/** A count with its noun, singular for exactly 1: plural(1, "change") -> "1 change",
 * plural(3, "change") -> "3 changes", plural(2, "study", "studies") -> "2 studies". */
export function plural(n, singular, pluralForm = `${singular}s`) {
  return `${n} ${Number(n) === 1 ? singular : pluralForm}`;
}

/** A share as a percentage: percent(0.1234) -> "12.3%", percent(0.5, 0) -> "50%". */
export function percent(v, digits = 1) {
  return Number.isFinite(v) ? `${(v * 100).toFixed(digits)}%` : MISSING;
}

/** A difference of two shares in percentage points, signed: points(0.012) -> "+1.2 pts",
 * points(-0.031) -> "-3.1 pts", points(0) -> "0.0 pts"; "–" when missing. */
export function points(v, digits = 1) {
  const n = finite(v);
  if (!Number.isFinite(n)) return MISSING;
  const text = Math.abs(n * 100).toFixed(digits);
  const sign = Number(text) === 0 ? "" : n > 0 ? "+" : "-";
  return `${sign}${text} pts`;
}

/** part of whole as a percentage: percentOf(1, 8) -> "12.5%". */
export function percentOf(part, whole, digits = 1) {
  const v = (100 * part) / whole;
  return Number.isFinite(v) ? `${v.toFixed(digits)}%` : MISSING;
}

/** A share as a whole percentage number, for bar widths and aria-valuenow: 0.426 -> 43. */
export function wholePercent(v) {
  return Math.round((Number(v) || 0) * 100);
}

/** A number with a fixed number of decimals: number(0.48, 3) -> "0.480". */
export function number(v, digits = 2) {
  const n = finite(v);
  return Number.isFinite(n) ? n.toFixed(digits) : MISSING;
}

/** A number rounded to at most `digits` decimals, trailing zeros dropped (a Number):
 * round(8.0000001, 3) -> 8, round(0.1 + 0.2, 3) -> 0.3. */
export function round(v, digits) {
  return Number(Number(v).toFixed(digits));
}

/** A budget (ε, step size) in pixel units as people read it, in grey levels: 8/255 -> "8/255",
 * 0.0098 -> "2.5/255" (at most two decimals, trailing zeros dropped; the same rounding as
 * runconfig's grey_levels); "–" when missing. The pixel-unit value stays in the API
 * and the exports. */
export function greyLevels(v) {
  const n = finite(v);
  if (!Number.isFinite(n)) return MISSING;
  const levels = round(n * 255, 2);
  return `${Object.is(levels, -0) ? 0 : levels}/255`;
}

/** A size in bytes: bytes(1536) -> "1.5 KiB", bytes(1.5e9) -> "1.4 GiB"; "–" when missing. */
export function bytes(v) {
  const n = finite(v);
  if (!Number.isFinite(n)) return MISSING;
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let x = n;
  while (Math.abs(x) >= 1024 && i < units.length - 1) { x /= 1024; i++; }
  return `${i ? x.toFixed(1) : Math.round(x)} ${units[i]}`;
}

// A time the API sends without a zone is UTC (every stored time is); a browser would read
// it as local time.
const NAIVE_TIME = /T\d\d:\d\d(:\d\d(\.\d+)?)?$/;

/** Date and time in the reader's locale and time zone, with the zone named
 * ("12/7/2026, 1:28:30 PM GMT+1"); "" when there is none. */
export function dateTime(v) {
  if (!v) return "";
  const d = new Date(typeof v === "string" && NAIVE_TIME.test(v) ? `${v}Z` : v);
  return d.toLocaleString(undefined, {
    year: "numeric", month: "numeric", day: "numeric",
    hour: "numeric", minute: "2-digit", second: "2-digit", timeZoneName: "short",
  });
}

/** Date in the reader's locale; "" when there is none. */
export function date(v) {
  return v ? new Date(v).toLocaleDateString() : "";
}

/** Seconds as "42 s", "3 min 5 s" or "2 h 10 min"; "" when not a number. */
export function duration(s) {
  if (!Number.isFinite(s)) return "";
  if (s < 60) return `${Math.round(s)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

/** Milliseconds as "42 s" or "3 min 05 s" (time on task); "–" when missing. */
export function durationMs(ms) {
  if (ms === null || ms === undefined) return MISSING;
  const s = Math.round(ms / 1000);
  return s < 60 ? `${s} s` : `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
}

/** Milliseconds as a running clock, "m:ss" (whole seconds, rounded down). */
export function clock(ms) {
  const sec = Math.floor(ms / 1000);
  return `${Math.floor(sec / 60)}:${String(sec % 60).padStart(2, "0")}`;
}
