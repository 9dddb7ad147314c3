// The drawing hotkeys, listed and remappable: click a key, press the new one (Escape keeps the
// old); a key does one thing, so a key already used swaps: the row that had it takes the
// changed row's old key, and a note under the list says so (nothing is unbound silently).
// "Restore default keys" puts the defaults back. The element only edits the list: the page applies it to its MaskCanvas and
// keeps it (localStorage).
// Usage: import "../components/hotkey-table/hotkey-table.js";   // defines <hotkey-table>
//   <hotkey-table></hotkey-table>
//   table.keys = mc.keys;   // one key per row of DEFAULT_KEYS ("" for none)
//   table.addEventListener("keyschange", (e) => use(e.detail.keys, e.detail.reset));
// Event: `keyschange` (detail: {keys, reset}: the whole new list; reset true for the defaults).

import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";
import { DEFAULT_KEYS, hotkeyList, keyName } from "../mask-canvas/mask-canvas.js";

const MODIFIERS = ["Control", "Shift", "Alt", "Meta"];

export class HotkeyTable extends HTMLElement {
  _keys = DEFAULT_KEYS.map(([k]) => k);
  _waitingRow = -1;
  _listener = null; // the keydown listener while a row waits for its new key

  get keys() { return this._keys.slice(); }
  set keys(keys) {
    this._keys = keys.slice();
    if (this.isConnected) this._draw();
  }

  connectedCallback() {
    if (!this.querySelector("details.hotkeys")) {
      render(this, html`<details class="hotkeys" open>
          <summary>Hotkeys <span class="muted small">(click a key to change it)</span></summary>
          <table></table>
          <p class="keys-note small" role="status" hidden></p>
          <button type="button" class="link keys-reset">Restore default keys</button>
        </details>`);
      this.querySelector("table").addEventListener("click", (e) => {
        const b = e.target.closest("button.key");
        if (b) this._waitFor(Number(b.dataset.row));
      });
      this.querySelector(".keys-reset").addEventListener("click", () => {
        this._stopWaiting();
        this._say("");
        this._change(DEFAULT_KEYS.map(([k]) => k), true);
      });
    }
    this._draw();
  }

  disconnectedCallback() { this._stopWaiting(); }

  /** The next key press (modifiers alone do not count) becomes the row's key. */
  _waitFor(row) {
    this._stopWaiting();
    this._waitingRow = row;
    this._draw();
    this._listener = (ev) => {
      if (MODIFIERS.includes(ev.key)) return;
      ev.preventDefault();
      ev.stopImmediatePropagation(); // the press is a new key, not a drawing command
      this._stopWaiting();
      const k = keyName(ev);
      if (k === "escape") { this._draw(); return; }
      const keys = this._keys.slice();
      const other = keys.indexOf(k);
      const old = keys[row];
      this._say("");
      if (other >= 0 && other !== row) { // a key does one thing: the two rows swap keys
        keys[other] = old;
        const labels = hotkeyList(keys).map(([, label]) => label.split(" (")[0]);
        this._say(old ? `“${k}” was the key for ${labels[other]}: the two swapped, so ${labels[other]} is now on “${old}”.`
          : `“${k}” was the key for ${labels[other]}, which now has no key: click its key to give it one.`);
      }
      keys[row] = k;
      this._change(keys, false);
    };
    window.addEventListener("keydown", this._listener, true);
  }

  _stopWaiting() {
    if (this._listener) window.removeEventListener("keydown", this._listener, true);
    this._listener = null;
    this._waitingRow = -1;
  }

  /** The note under the list ("" hides it). */
  _say(text) {
    const note = this.querySelector(".keys-note");
    if (!note) return;
    note.textContent = text;
    note.hidden = !text;
  }

  _change(keys, reset) {
    this._keys = keys;
    this._draw();
    this.dispatchEvent(new CustomEvent("keyschange", { detail: { keys: keys.slice(), reset } }));
  }

  _draw() {
    const table = this.querySelector("table");
    if (!table) return;
    render(table, html`${hotkeyList(this._keys).map(([k, label], i) => html`<tr>
        <td><button type="button" class="key" data-row="${i}" title="Change the key for: ${label}">
          <kbd>${i === this._waitingRow ? "press a key…" : k || "none"}</kbd></button></td><td>${label}</td></tr>`)}
      <tr><td><kbd>ctrl+enter</kbd></td><td>Submit</td></tr>`);
  }
}

if (!customElements.get("hotkey-table")) {
  linkStylesheet(new URL("./hotkey-table.css", import.meta.url));
  customElements.define("hotkey-table", HotkeyTable);
}
