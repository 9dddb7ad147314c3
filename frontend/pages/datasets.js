// Researcher's dataset list (#/datasets) with the zip import form.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { date } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import "../components/upload-form/upload-form.js";

export async function mount(root) {
  render(root, html`
    <section class="page">
      <h1>Datasets</h1>
      <table class="data datasets">
        <thead><tr><th>Name</th><th>Description</th><th class="num">Classes</th><th class="num">Images</th>
          <th class="num">Annotators / image</th><th>Created</th></tr></thead>
        <tbody><tr><td colspan="6" class="muted">Loading…</td></tr></tbody>
      </table>
      <upload-form class="import" style="margin-top:24px"></upload-form>
    </section>`);
  const tbody = root.querySelector("tbody");

  async function load() {
    const res = await api("/api/datasets");
    if (!res.data.length) {
      render(tbody, html`<tr><td colspan="6" class="muted">No datasets yet: import one below.</td></tr>`);
      return;
    }
    render(tbody, html`${res.data.map((d) => html`
      <tr>
        <td><a href="#/datasets/${d.id}">${d.name}</a></td>
        <td class="muted">${d.description || ""}</td>
        <td class="num">${d.num_classes}</td>
        <td class="num">${d.num_images}</td>
        <td class="num">${d.annotators_per_image}</td>
        <td>${date(d.created_at)}</td>
      </tr>`)}`);
  }

  root.querySelector("upload-form").addEventListener("imported", () => load());
  await load();
}
