// Annotator's queue (#/annotate, also their home): datasets with images left to annotate and
// masks a reviewer returned (flagged: they open first), a dataset picker and "Start
// annotating", which opens the next image.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";

export const LAST_DATASET_KEY = "salience-annotate-dataset";

/** Open the next image of the queue (optionally of one dataset); returns false when empty. */
export async function openNext(datasetId, navigate) {
  const q = datasetId ? `?dataset_id=${encodeURIComponent(datasetId)}` : "";
  const next = await api(`/api/annotate/next${q}`);
  if (!next) return false;
  navigate(`#/annotate/${next.image.id}${datasetId ? `?dataset=${encodeURIComponent(datasetId)}` : ""}`);
  return true;
}

export async function mount(root, { session, navigate = (h) => { location.hash = h; }, title }) {
  let res;
  try {
    res = await api("/api/annotate/datasets");
  } catch (err) {
    render(root, html`<section class="page"><h1>${title || "Annotation queue"}</h1>
      <p class="form-error" role="alert">The queue could not be loaded: ${err.message}</p></section>`);
    return;
  }
  const total = res.data.reduce((n, d) => n + d.remaining, 0);
  const returned = res.data.reduce((n, d) => n + (d.returned || 0), 0);
  const last = sessionStorage.getItem(LAST_DATASET_KEY) || "";
  const pending = session.saveQueue ? session.saveQueue.pendingChanges() : 0;
  render(root, html`
    <section class="page">
      <h1>${title || "Annotation queue"}</h1>
      ${pending ? html`<p class="card">Saving ${pending} kept change(s) from an earlier visit…</p>` : ""}
      ${returned ? html`<p class="card returned-note" role="status"><span class="badge off">returned</span>
        ${returned} of your masks ${returned === 1 ? "was" : "were"} returned by a reviewer with a comment;
        ${returned === 1 ? "it comes" : "they come"} first when you start annotating.</p>` : ""}
      <div class="card stack">
        <h2>Your queue</h2>
        ${res.data.length ? html`
          <table class="data queue">
            <thead><tr><th>Dataset</th><th class="num">Images left for you</th><th class="num">Returned to you</th></tr></thead>
            <tbody>${res.data.map((d) => html`<tr data-dataset="${d.id}"><td>${d.name}</td><td class="num">${d.remaining}</td>
              <td class="num returned">${d.returned ? html`<span class="badge off">${d.returned} returned</span>` : "0"}</td></tr>`)}</tbody>
          </table>
          <div class="row">
            <label class="inline">Dataset
              <select name="dataset">
                <option value="">All datasets (${total} images)</option>
                ${res.data.map((d) => html`<option value="${d.id}" ${String(d.id) === last ? html`selected` : ""}>
                  ${d.name} (${d.remaining})</option>`)}
              </select></label>
            <button type="button" class="primary start" ${total ? "" : html`disabled`}>Start annotating</button>
          </div>` : html`<p class="muted">No datasets are assigned to you yet.</p>`}
        <p class="form-error" role="alert" hidden></p>
        <p class="muted empty" hidden>Nothing left to annotate here. Thank you!</p>
      </div>
    </section>`);
  const start = root.querySelector("button.start");
  if (!start) return;
  start.addEventListener("click", async () => {
    const ds = root.querySelector("select[name=dataset]").value;
    sessionStorage.setItem(LAST_DATASET_KEY, ds);
    const err = root.querySelector(".form-error");
    err.hidden = true;
    start.disabled = true;
    try {
      if (!(await openNext(ds, navigate))) root.querySelector(".empty").hidden = false;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    } finally {
      start.disabled = false;
    }
  });
}
