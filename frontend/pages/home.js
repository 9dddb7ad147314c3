// Home page per role (#/home): a short overview with links into the role's pages.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";

export async function mount(root, ctx) {
  const { session } = ctx;
  const user = session.user;
  if (user.role === "annotator") {
    // an annotator's home is their queue
    await import("../components/annotation-queue/annotation-queue.js");
    render(root, html`<section class="page"><h1>Welcome, ${user.username}</h1></section>`);
    const queue = Object.assign(document.createElement("annotation-queue"), { session, navigate: ctx.navigate });
    root.querySelector(".page").append(queue);
    await queue.loading;
    return;
  }
  if (user.role === "admin") {
    const users = await api("/api/users");
    const active = users.data.filter((u) => u.is_active).length;
    render(root, html`
      <section class="page">
        <h1>Welcome, ${user.username}</h1>
        <div class="grid-cards">
          <div class="card"><h2>Users</h2>
            <p>${users.count} accounts, ${active} active.</p>
            <a class="button primary" href="#/admin/users">Manage users</a></div>
        </div>
      </section>`);
    return;
  }
  const ds = await api("/api/datasets");
  const images = ds.data.reduce((n, d) => n + (d.num_images || 0), 0);
  render(root, html`
    <section class="page">
      <h1>Welcome, ${user.username}</h1>
      <div class="grid-cards">
        <div class="card"><h2>Datasets</h2>
          <p>${ds.count} datasets, ${images} images.</p>
          <a class="button primary" href="#/datasets">Open datasets</a></div>
      </div>
    </section>`);
}
