// Users management for admins (#/admin/users): list, create, change role, (de)activate,
// set a new password, sign an account out everywhere. Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { date } from "../lib/format.js";
import { html, render } from "../lib/html.js";

const ROLES = ["annotator", "researcher", "admin"];

export async function mount(root, { session }) {
  render(root, html`
    <section class="page">
      <h1>Users</h1>
      <form class="card stack create-user" novalidate>
        <h2>New account</h2>
        <div class="row">
          <label>Username <input name="username" autocomplete="off" required></label>
          <label>Password <input name="password" type="password" autocomplete="new-password" required></label>
          <label>Role <select name="role">${ROLES.map((r) => html`<option>${r}</option>`)}</select></label>
          <button type="submit" class="primary" style="align-self:flex-end">Create</button>
        </div>
        <p class="form-error" role="alert" hidden></p>
        <p class="form-ok" role="status" hidden></p>
      </form>
      <p class="form-error list-error" role="alert" hidden></p>
      <p class="form-ok list-ok" role="status" hidden></p>
      <table class="data users">
        <thead><tr><th>Username</th><th>Role</th><th>Status</th><th>Created</th><th></th></tr></thead>
        <tbody><tr><td colspan="5" class="muted">Loading…</td></tr></tbody>
      </table>
      <dialog class="set-password"><form class="stack" novalidate>
        <h2>New password for <span class="who"></span></h2>
        <label>Password <input name="password" type="password" autocomplete="new-password" required></label>
        <p class="form-error" role="alert" hidden></p>
        <div class="row"><button type="submit" class="primary">Set password</button>
          <button type="button" class="cancel">Cancel</button></div>
      </form></dialog>
    </section>`);
  const tbody = root.querySelector("tbody");
  const listErr = root.querySelector(".list-error");
  const listOk = root.querySelector(".list-ok");
  const showListError = (msg) => { listErr.textContent = msg; listErr.hidden = !msg; listOk.hidden = true; };
  const showListOk = (msg) => { listOk.textContent = msg; listOk.hidden = !msg; };

  async function load() {
    const res = await api("/api/users");
    render(tbody, html`${res.data.map((u) => html`
      <tr data-id="${u.id}" class="${u.is_active ? "" : "inactive"}">
        <td>${u.username}</td>
        <td><select class="role" aria-label="Role of ${u.username}" ${u.id === session.user.id ? html`disabled` : ""}>
          ${ROLES.map((r) => html`<option ${r === u.role ? html`selected` : ""}>${r}</option>`)}</select></td>
        <td><span class="badge ${u.is_active ? "ok" : "off"}">${u.is_active ? "active" : "deactivated"}</span></td>
        <td>${date(u.created_at)}</td>
        <td class="row end">
          <button type="button" class="password">Set password</button>
          <button type="button" class="everywhere" title="End every session of this account now">Sign out everywhere</button>
          ${u.id === session.user.id ? "" : html`<button type="button" class="toggle ${u.is_active ? "danger" : ""}"
            data-active="${u.is_active ? "1" : "0"}">${u.is_active ? "Deactivate" : "Activate"}</button>`}
        </td>
      </tr>`)}`);
  }

  tbody.addEventListener("change", async (e) => {
    if (!e.target.matches("select.role")) return;
    const tr = e.target.closest("tr");
    showListError("");
    const name = tr.cells[0].textContent;
    try {
      await api(`/api/users/${tr.dataset.id}`, { method: "PATCH", body: { role: e.target.value } });
      showListOk(`${name} is now ${e.target.value}; their open pages change at their next page load.`);
    } catch (ex) { showListError(ex.message); }
    await load();
  });
  tbody.addEventListener("click", async (e) => {
    const tr = e.target.closest("tr");
    if (!tr) return;
    showListError("");
    try {
      if (e.target.matches("button.toggle")) {
        await api(`/api/users/${tr.dataset.id}`, {
          method: "PATCH", body: { is_active: e.target.dataset.active !== "1" },
        });
        await load();
      } else if (e.target.matches("button.everywhere")) {
        const name = tr.cells[0].textContent;
        const res = await api(`/api/users/${tr.dataset.id}/sign-out-everywhere`, { method: "POST" });
        showListOk(`${name}: ${res.revoked} session${res.revoked === 1 ? "" : "s"} ended.`);
      } else if (e.target.matches("button.password")) {
        askPassword(tr.dataset.id, tr.cells[0].textContent);
      }
    } catch (ex) { showListError(ex.message); }
  });

  // a new password, typed into a masked field (never a browser prompt, which shows it)
  const dialog = root.querySelector("dialog.set-password");
  const pwForm = dialog.querySelector("form");
  const pwError = dialog.querySelector(".form-error");
  function askPassword(id, name) {
    pwForm.reset();
    pwForm.dataset.id = id;
    pwForm.dataset.name = name;
    dialog.querySelector(".who").textContent = name;
    pwError.hidden = true;
    dialog.showModal();
  }
  dialog.querySelector("button.cancel").addEventListener("click", () => dialog.close());
  pwForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const pw = pwForm.password.value;
    if (!pw) { pwError.textContent = "Type the new password."; pwError.hidden = false; return; }
    try {
      await api(`/api/users/${pwForm.dataset.id}`, { method: "PATCH", body: { password: pw } });
      dialog.close();
      showListError("");
      showListOk(`${pwForm.dataset.name}'s password is set: their sessions are ended, and a pause after failed sign-ins is lifted.`);
    } catch (ex) { pwError.textContent = ex.message; pwError.hidden = false; }
  });

  const form = root.querySelector("form.create-user");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = form.querySelector(".form-error");
    const ok = form.querySelector(".form-ok");
    err.hidden = ok.hidden = true;
    if (!form.username.value.trim() || !form.password.value) {
      err.textContent = "Enter a username and a password.";
      err.hidden = false;
      return;
    }
    try {
      const u = await api("/api/users", {
        method: "POST",
        body: { username: form.username.value.trim(), password: form.password.value, role: form.role.value },
      });
      ok.textContent = `Created ${u.username} (${u.role}).`;
      ok.hidden = false;
      form.reset();
      await load();
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    }
  });

  await load();
}
