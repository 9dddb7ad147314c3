// Your account (#/account), for every role: change your password (your other sessions end),
// and sign out everywhere (every browser and token of the account, this one included).
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";

export async function mount(root, { session, navigate }) {
  render(root, html`
    <section class="page account">
      <h1>Your account</h1>
      <p>Signed in as <strong>${session.user.username}</strong> (${session.user.role}).</p>
      <form class="card stack change-password" novalidate>
        <h2>Change your password</h2>
        <label>Current password <input name="current" type="password" autocomplete="current-password" required></label>
        <label>New password <input name="next" type="password" autocomplete="new-password" required></label>
        <label>New password again <input name="again" type="password" autocomplete="new-password" required></label>
        <p class="muted">At least 10 characters, not a common password, not your username. Your other
          sessions (other browsers, API tokens) end; this one stays.</p>
        <p class="form-error" role="alert" hidden></p>
        <p class="form-ok" role="status" hidden></p>
        <button type="submit" class="primary">Change password</button>
      </form>
      <div class="card stack">
        <h2>Sign out everywhere</h2>
        <p>Ends every session of your account at once: every browser and every API token, this one
          included. Use it if you signed in on a shared computer or a token may have leaked.</p>
        <p class="form-error everywhere-error" role="alert" hidden></p>
        <button type="button" class="danger sign-out-everywhere">Sign out everywhere</button>
      </div>
    </section>`);

  const form = root.querySelector("form.change-password");
  const err = form.querySelector(".form-error");
  const ok = form.querySelector(".form-ok");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = ok.hidden = true;
    const say = (box, text) => { box.textContent = text; box.hidden = false; };
    if (!form.current.value || !form.next.value) { say(err, "Enter your current and your new password."); return; }
    if (form.next.value !== form.again.value) { say(err, "The two new passwords differ."); return; }
    try {
      const res = await api("/api/auth/password", {
        method: "POST", body: { current_password: form.current.value, new_password: form.next.value },
      });
      form.reset();
      const others = res.revoked === 1 ? "1 other session was" : `${res.revoked} other sessions were`;
      say(ok, `Password changed. ${others} signed out.`);
    } catch (ex) { say(err, ex.message); }
  });

  root.querySelector(".sign-out-everywhere").addEventListener("click", async () => {
    const box = root.querySelector(".everywhere-error");
    box.hidden = true;
    if (!confirm("Sign out every browser and token of your account, this one included?")) return;
    try {
      await api("/api/auth/sign-out-everywhere", { method: "POST", reauth: false });
    } catch (ex) { box.textContent = ex.message; box.hidden = false; return; }
    if (session.saveQueue) session.saveQueue.destroy();
    session.user = null;
    session.saveQueue = null;
    navigate("#/login");
  });
}
