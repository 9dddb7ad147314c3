// Login page (#/login?next=/path): signs in and goes to the requested page or the role's home.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";

export async function mount(root, { query, session, navigate, setUser }) {
  const next = query.get("next") || "/home";
  if (session.user) { navigate(`#${next.startsWith("/login") ? "/home" : next}`); return; }
  render(root, html`
    <section class="page login-page">
      <h1>SIP-AT studio</h1>
      <form class="card stack" novalidate>
        <label>Username <input name="username" autocomplete="username" required autofocus></label>
        <label>Password <input name="password" type="password" autocomplete="current-password" required></label>
        <p class="form-error" role="alert" hidden></p>
        <button type="submit" class="primary">Sign in</button>
      </form>
    </section>`);
  const form = root.querySelector("form");
  const err = root.querySelector(".form-error");
  form.username.focus();
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = true;
    const username = form.username.value.trim();
    if (!username || !form.password.value) {
      err.textContent = "Enter your username and password.";
      err.hidden = false;
      return;
    }
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const res = await api("/api/auth/login", {
        method: "POST",
        reauth: false,
        body: { username, password: form.password.value },
      });
      setUser(res.user);
      navigate(`#${next.startsWith("/login") ? "/home" : next}`);
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
      button.disabled = false;
    }
  });
}
