// A label study's answer (issue 26): the dataset's class names as buttons, or "can't tell".
// Up to SEARCH_FROM - 1 classes: one button each, keys 1..9 name them and 0 is "can't tell".
// SEARCH_FROM classes or more: a search box filters the list as the participant types, Enter
// takes the first class still listed, and Escape empties the box. Every button carries
// data-answer (the class index, or "none"), so the participant page wires them like its other
// answer buttons.
// Usage: labelHelp(classes), labelChoices(classes) in the trial's markup, then
// wireLabelSearch(root) and labelKey(classes, root, event) in its key handler.

import { html } from "../../lib/html.js";

export const SEARCH_FROM = 10;

export function labelHelp(classes) {
  return classes.length < SEARCH_FROM
    ? html`Name what the image shows: press the number of its class (<kbd>1</kbd> to <kbd>${String(classes.length)}</kbd>) or click it; <kbd>0</kbd> or "Can't tell" if you cannot tell.`
    : html`Name what the image shows: type to search the ${String(classes.length)} classes, press <kbd>Enter</kbd> for the first match or click one; "Can't tell" if you cannot tell.`;
}

export function labelChoices(classes) {
  const search = classes.length >= SEARCH_FROM;
  return html`<div class="label-answers">
    ${search ? html`<p><input type="search" class="label-search" placeholder="Search the classes…" aria-label="Search the classes" autocomplete="off"></p>` : ""}
    <div class="answers label-list">${classes.map((name, i) => html`<button data-answer="${String(i)}" data-name="${name.toLowerCase()}" disabled>${search ? "" : html`<kbd>${String(i + 1)}</kbd> `}${name}</button>`)}</div>
    <p class="answers"><button data-answer="none" disabled>${search ? "" : html`<kbd>0</kbd> `}Can't tell</button></p>
  </div>`;
}

/** Filter the class buttons by the search box's text (nothing to do without a box). */
export function wireLabelSearch(root) {
  const box = root.querySelector(".label-search");
  if (!box) return;
  box.addEventListener("input", () => {
    const q = box.value.trim().toLowerCase();
    root.querySelectorAll(".label-list [data-answer]").forEach((b) => {
      b.hidden = q !== "" && !b.dataset.name.includes(q);
    });
  });
  box.focus();
}

/** The answer a key names, or null: digits with few classes, Enter (first match) with many. */
export function labelKey(classes, root, e) {
  if (classes.length < SEARCH_FROM) {
    if (e.key === "0") return "none";
    const n = Number(e.key);
    return Number.isInteger(n) && n >= 1 && n <= classes.length ? String(n - 1) : null;
  }
  if (e.key === "Escape") {
    const box = root.querySelector(".label-search");
    if (box) { box.value = ""; box.dispatchEvent(new Event("input")); }
    return null;
  }
  if (e.key !== "Enter") return null;
  const first = [...root.querySelectorAll(".label-list [data-answer]")].find((b) => !b.hidden);
  return first ? first.dataset.answer : null;
}
