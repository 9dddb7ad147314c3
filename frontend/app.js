// Entry point: session, header with role-based navigation, and the hash router.
// Routes map to modules in pages/ that export mount(root, ctx) -> optional cleanup function.
// Usage: loaded by index.html as <script type="module" src="/static/app.js">.

import { api, setReauthHandler } from "./lib/api.js";
import { html, render } from "./lib/html.js";
import { SaveQueue } from "./lib/save-queue.js";
import { showLoginDialog } from "./components/login-dialog/login-dialog.js";

/** The signed-in user and their save queue, shared with the pages. */
export const session = { user: null, saveQueue: null };

const ROUTES = [
  { path: /^\/login$/, load: () => import("./pages/login.js"), public: true },
  { path: /^\/home$/, load: () => import("./pages/home.js") },
  { path: /^\/account$/, load: () => import("./pages/account.js") },
  { path: /^\/admin\/users$/, load: () => import("./pages/admin-users.js"), roles: ["admin"] },
  { path: /^\/datasets$/, load: () => import("./pages/datasets.js"), roles: ["researcher", "admin"] },
  { path: /^\/datasets\/(\d+)$/, load: () => import("./pages/dataset-detail.js"), roles: ["researcher", "admin"] },
  { path: /^\/review$/, load: () => import("./pages/review.js"), roles: ["researcher", "admin"] },
  { path: /^\/annotate$/, load: () => import("./pages/annotate-queue.js"), roles: ["annotator"] },
  { path: /^\/annotate\/(\d+)$/, load: () => import("./pages/annotate.js"), roles: ["annotator"] },
  { path: /^\/runs$/, load: () => import("./pages/runs.js"), roles: ["researcher", "admin"] },
  { path: /^\/runs\/(\d+)$/, load: () => import("./pages/run.js"), roles: ["researcher", "admin"] },
  { path: /^\/compare$/, load: () => import("./pages/compare.js"), roles: ["researcher", "admin"] },
  { path: /^\/sweeps\/(\d+)$/, load: () => import("./pages/sweep.js"), roles: ["researcher", "admin"] },
  { path: /^\/studies$/, load: () => import("./pages/studies.js"), roles: ["researcher", "admin"] },
  { path: /^\/studies\/(\d+)$/, load: () => import("./pages/study.js"), roles: ["researcher", "admin"] },
  { path: /^\/queue$/, load: () => import("./pages/queue.js"), roles: ["researcher", "admin"] },
];

// Only pages that exist get a navigation entry.
const NAV = {
  researcher: [["#/home", "Home"], ["#/datasets", "Datasets"], ["#/review", "Review"], ["#/runs", "Runs"], ["#/studies", "Studies"], ["#/queue", "Queue"]],
  annotator: [["#/home", "Home"], ["#/annotate", "Annotate"]],
};
// an admin sees every section a researcher sees, and the users
NAV.admin = [...NAV.researcher, ["#/admin/users", "Users"]];

const root = document.getElementById("app");
const header = document.querySelector(".app-header");
let cleanup = null;
let renderToken = 0;

export function navigate(hash) {
  if (location.hash === hash) route();
  else location.hash = hash;
}

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/home";
  const [path, qs = ""] = raw.split("?");
  return { path, query: new URLSearchParams(qs) };
}

/** Called after any sign-in: remember the user and start sending their kept masks. */
export function setUser(user) {
  const changed = !session.user || session.user.id !== user.id;
  session.user = user;
  if (changed) {
    if (session.saveQueue) session.saveQueue.destroy();
    session.saveQueue = new SaveQueue({ userId: user.id });
    session.saveQueue.recover();
  }
  renderHeader();
}

function renderHeader() {
  const user = session.user;
  header.hidden = !user;
  if (!user) { header.innerHTML = ""; return; }
  const { path } = parseHash();
  const links = NAV[user.role] || [];
  render(header, html`
    <a class="brand" href="#/home">SIP-AT studio</a>
    <nav aria-label="Main">
      ${links.map(([href, label]) => html`<a href="${href}"
        class="${path === href.slice(1) || path.startsWith(href.slice(1) + "/") ? "active" : ""}">${label}</a>`)}
    </nav>
    <div class="who">
      <a class="user-name" href="#/account" title="Your account: password and sessions">${user.username}</a>
      <span class="badge role-${user.role}">${user.role}</span>
      <button type="button" class="link logout">Sign out</button>
    </div>`);
  header.querySelector(".logout").addEventListener("click", logout);
}

async function logout() {
  const q = session.saveQueue;
  const pending = q ? q.pendingChanges() : 0;
  if (pending && !confirm(`${pending} change(s) are not on the server yet. They stay in this browser ` +
      "and are sent the next time you sign in here. Sign out anyway?")) return;
  try { await api("/api/auth/logout", { method: "POST", reauth: false }); } catch { /* already out */ }
  if (q) q.destroy();
  session.user = null;
  session.saveQueue = null;
  renderHeader();
  navigate("#/login");
}

async function route() {
  const token = ++renderToken;
  const { path, query } = parseHash();
  const match = ROUTES.map((r) => [r, path.match(r.path)]).find(([, m]) => m);
  if (!match) { navigate("#/home"); return; }
  const [r, m] = match;
  if (!r.public && !session.user) {
    navigate(`#/login?next=${encodeURIComponent(location.hash.slice(1) || "/home")}`);
    return;
  }
  if (session.user) await refreshRole();
  if (token !== renderToken) return;
  if (r.roles && !r.roles.includes(session.user.role)) {
    renderPage(html`<section class="page"><h1>Not available</h1>
      <p>This page is for the ${r.roles.join(" or ")} role. <a href="#/home">Go to your home page</a>.</p></section>`);
    return;
  }
  let mod;
  try {
    mod = await r.load();
  } catch (err) {
    renderPage(html`<section class="page"><p class="form-error">The page could not be loaded: ${err.message}</p></section>`);
    return;
  }
  if (token !== renderToken) return;
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  renderHeader();
  root.innerHTML = "";
  const page = document.createElement("div");
  page.className = "page-host";
  root.appendChild(page);
  try {
    const c = await mod.mount(page, { params: m.slice(1), query, session, navigate, setUser });
    if (token === renderToken) cleanup = typeof c === "function" ? c : null;
    else if (typeof c === "function") c();
  } catch (err) {
    console.error(err);
    if (token === renderToken) {
      render(page, html`<section class="page"><p class="form-error" role="alert">${err.message}</p></section>`);
    }
  }
}

/** An admin may have changed this account's role since sign-in: every page load asks, so
 * the header, the pages offered and the role checks follow at once (said in a notice). */
async function refreshRole() {
  let me;
  try { me = await api("/api/auth/me", { reauth: false }); } catch { return; } // the page's own calls sign in again
  if (!session.user || me.id !== session.user.id || me.role === session.user.role) return;
  setUser(me);
  const note = document.createElement("p");
  note.className = "role-changed form-ok";
  note.setAttribute("role", "status");
  note.textContent = `Your role is now ${me.role}: the pages offered have changed.`;
  header.after(note);
  setTimeout(() => note.remove(), 8000);
}

function renderPage(markup) {
  if (cleanup) { try { cleanup(); } catch (e) { console.error(e); } cleanup = null; }
  renderHeader();
  render(root, markup);
}

async function start() {
  setReauthHandler(async () => {
    const user = await showLoginDialog({ username: session.user ? session.user.username : "" });
    setUser(user);
    return user;
  });
  try {
    const me = await api("/api/auth/me", { reauth: false });
    setUser(me);
  } catch {
    session.user = null;
  }
  window.addEventListener("hashchange", route);
  if (!location.hash) location.replace("#/home");
  route();
}

start();
