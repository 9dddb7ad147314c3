// Re-login dialog shown in place when the session expires, so that the page (and any unsaved
// drawing) stays where it is. Resolves with the user once signed in again.
// Usage: import { showLoginDialog } from "/static/components/login-dialog/login-dialog.js";
//   const user = await showLoginDialog({ username: "ann", message: "Your session expired." });

import { api } from "../../lib/api.js";
import { html, render } from "../../lib/html.js";

let open = null; // one dialog at a time; callers share its promise

export function showLoginDialog({ username = "", message = "" } = {}) {
  if (open) return open;
  open = new Promise((resolve) => {
    const dlg = document.createElement("dialog");
    dlg.className = "login-dialog";
    render(dlg, html`
      <form method="dialog" class="stack" novalidate>
        <h2>Sign in again</h2>
        <p class="muted">${message || "Your session has expired."} Nothing is lost: your work is kept
          in this browser and will be saved as soon as you are signed in.</p>
        <label>Username <input name="username" autocomplete="username" required value="${username}"
          ${username ? html`readonly` : ""}></label>
        <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
        <p class="form-error" role="alert" hidden></p>
        <div class="row end"><button type="submit" class="primary">Sign in</button></div>
      </form>`);
    document.body.appendChild(dlg);
    const form = dlg.querySelector("form");
    const err = dlg.querySelector(".form-error");
    // Escape must not close it: the pending saves need a valid session.
    dlg.addEventListener("cancel", (e) => e.preventDefault());
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
        dlg.remove();
        open = null;
        resolve(res.user);
      } catch (ex) {
        err.textContent = ex.message;
        err.hidden = false;
        button.disabled = false;
        form.password.select();
      }
    });
    dlg.showModal();
    (username ? form.password : form.username).focus();
  });
  return open;
}
