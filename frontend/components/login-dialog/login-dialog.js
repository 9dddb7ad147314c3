// Re-login dialog shown in place when the session expires, so that the page (and any unsaved
// drawing) stays where it is. Resolves with the user once signed in again.
// Usage, as an element (defines <login-dialog>):
//   import "/static/components/login-dialog/login-dialog.js";
//   const dlg = document.body.appendChild(document.createElement("login-dialog"));
//   dlg.setAttribute("username", "ann");            // optional: fixed, read-only
//   dlg.setAttribute("message", "Your session expired.");
//   const user = await dlg.open();                   // also dispatches `signed-in` (detail: user)
// or, the call app.js makes (one dialog at a time; callers share its promise; the element is
// added to the page and removed again once signed in):
//   import { showLoginDialog } from "/static/components/login-dialog/login-dialog.js";
//   const user = await showLoginDialog({ username: "ann", message: "Your session has expired." });
// The element renders a <dialog class="login-dialog"> (the styles and the browser tests select it).

import { api } from "../../lib/api.js";
import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";

export class LoginDialog extends HTMLElement {
  #pending = null; // the promise of open() while the dialog is up

  connectedCallback() {
    if (!this.dialog) this.#render();
  }

  /** The <dialog> inside (null until it is first on the page). */
  get dialog() { return this.querySelector(":scope > dialog.login-dialog"); }

  /** Show the dialog modally (adding the element to the page if it is not on it); resolves with
   * the user once signed in. While it is open, every call returns the same promise. */
  open() {
    if (this.#pending) return this.#pending;
    if (!this.isConnected) document.body.appendChild(this); // renders
    else this.#render(); // fresh form, current attributes
    const dlg = this.dialog;
    const form = dlg.querySelector("form");
    const err = dlg.querySelector(".form-error");
    this.#pending = new Promise((resolve) => {
      form.addEventListener("submit", async (e) => {
        e.preventDefault();
        const button = form.querySelector("button");
        button.disabled = true;
        err.hidden = true;
        try {
          const res = await api("/api/auth/login", {
            method: "POST",
            reauth: false,
            body: { username: form.username.value.trim(), password: form.password.value },
          });
          dlg.close();
          this.#pending = null;
          this.dispatchEvent(new CustomEvent("signed-in", { detail: res.user, bubbles: true }));
          resolve(res.user);
        } catch (ex) {
          err.textContent = ex.message;
          err.hidden = false;
          button.disabled = false;
          form.password.select();
        }
      });
    });
    dlg.showModal();
    (this.getAttribute("username") ? form.password : form.username).focus();
    return this.#pending;
  }

  #render() {
    const username = this.getAttribute("username") || "";
    const message = this.getAttribute("message") || "";
    render(this, html`<dialog class="login-dialog">
      <form method="dialog" class="stack" novalidate>
        <h2>Sign in again</h2>
        <p class="muted">${message || "Your session has expired."} Nothing is lost: your work is kept
          in this browser and will be saved as soon as you are signed in.</p>
        <label>Username <input name="username" autocomplete="username" required value="${username}"
          ${username ? html`readonly` : ""}></label>
        <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
        <p class="form-error" role="alert" hidden></p>
        <div class="row end"><button type="submit" class="primary">Sign in</button></div>
      </form></dialog>`);
    // Escape must not close it: the pending saves need a valid session.
    this.dialog.addEventListener("cancel", (e) => e.preventDefault());
  }
}

if (!customElements.get("login-dialog")) {
  linkStylesheet(new URL("./login-dialog.css", import.meta.url));
  customElements.define("login-dialog", LoginDialog);
}

let shared = null; // the open dialog's promise; callers share it

/** Open a <login-dialog> on the page and resolve with the user once signed in; the element is
 * removed again afterwards. While one is open, every call returns its promise. */
export function showLoginDialog({ username = "", message = "" } = {}) {
  if (shared) return shared;
  const dlg = document.createElement("login-dialog");
  if (username) dlg.setAttribute("username", username);
  if (message) dlg.setAttribute("message", message);
  shared = dlg.open().then((user) => {
    dlg.remove();
    shared = null;
    return user;
  });
  return shared;
}
