// HTML escaping for template strings.
// Usage: import { html, raw, escapeHtml } from "/static/lib/html.js";
//   el.innerHTML = html`<p title="${title}">${name}</p>`;   // every ${} is escaped
//   html`<ul>${items.map((i) => html`<li>${i}</li>`)}</ul>`; // nested html`` is kept as markup

/** Markup that is already safe (built by `html` or `raw`); never escaped again. */
class SafeHtml {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

/** Escape a value for use in HTML text or a quoted attribute. */
export function escapeHtml(value) {
  if (value === null || value === undefined) return "";
  return String(value).replace(/[&<>"'`]/g, (c) => ESCAPES[c]);
}

/** Mark a trusted string as markup (only for constants written in this codebase). */
export function raw(text) { return new SafeHtml(String(text)); }

function interpolate(value) {
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(interpolate).join("");
  if (value === false || value === null || value === undefined) return "";
  return escapeHtml(value);
}

/** Tagged template: static parts are markup, every interpolated value is escaped. */
export function html(strings, ...values) {
  let out = strings[0];
  for (let i = 0; i < values.length; i++) out += interpolate(values[i]) + strings[i + 1];
  return new SafeHtml(out);
}

/** Render `html` markup into an element. */
export function render(el, markup) { el.innerHTML = String(markup); }
