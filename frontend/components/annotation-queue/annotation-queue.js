// An annotator's queue: the datasets with images left for them and the masks a reviewer
// returned (those open first), a dataset picker and "Start annotating", which opens the next
// image; and how many changes from an earlier visit are still being saved. The annotate queue
// page (#/annotate) and an annotator's home page both show it.
// Usage: import "../components/annotation-queue/annotation-queue.js";   // defines <annotation-queue>
//   const queue = Object.assign(document.createElement("annotation-queue"), { session, navigate });
//   section.append(queue);   // loads GET /api/annotate/datasets when put on the page
// Properties, set before it is put on the page: session (the app's: its saveQueue's pending
// changes are shown) and navigate (how the next image is opened; location.hash by default).

import { api } from "../../lib/api.js";
import { plural } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { LAST_DATASET_KEY, openNext } from "../../lib/next-image.js";
import { linkStylesheet } from "../../lib/styles.js";

export class AnnotationQueue extends HTMLElement {
  session = { saveQueue: null };
  navigate = (hash) => { location.hash = hash; };

  /** Loaded once, when first put on the page. */
  connectedCallback() {
    if (this.loading) return;
    this.loading = this.load();
  }

  async load() {
    let res;
    try {
      res = await api("/api/annotate/datasets");
    } catch (err) {
      render(this, html`<p class="form-error" role="alert">The queue could not be loaded: ${err.message}</p>`);
      return;
    }
    const pending = this.session.saveQueue ? this.session.saveQueue.pendingChanges() : 0;
    render(this, html`
      ${pending ? html`<p class="card">Saving ${pending} kept change(s) from an earlier visit…</p>` : ""}
      ${returnedNote(res.data.reduce((n, d) => n + (d.returned || 0), 0))}
      <div class="card stack">
        <h2>Your queue</h2>
        ${res.data.length ? queueTable(res.data) : html`<p class="muted">No datasets are assigned to you yet.</p>`}
        <p class="form-error" role="alert" hidden></p>
        <p class="muted empty" hidden>Nothing left to annotate here. Thank you!</p>
      </div>`);
    const start = this.querySelector("button.start");
    if (start) start.addEventListener("click", () => this.start(start));
  }

  /** Open the next image of the chosen dataset, or say that none is left. */
  async start(button) {
    const ds = this.querySelector("select[name=dataset]").value;
    sessionStorage.setItem(LAST_DATASET_KEY, ds);
    const err = this.querySelector(".form-error");
    err.hidden = true;
    button.disabled = true;
    try {
      if (!(await openNext(ds, this.navigate))) this.querySelector(".empty").hidden = false;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  }
}

function returnedNote(returned) {
  if (!returned) return "";
  return html`<p class="card returned-note" role="status"><span class="badge off">returned</span>
        ${returned} of your masks ${returned === 1 ? "was" : "were"} returned by a reviewer with a comment;
        ${returned === 1 ? "it comes" : "they come"} first when you start annotating.</p>`;
}

/** The datasets with what is left in each, the picker (the last choice preselected) and Start. */
function queueTable(datasets) {
  const total = datasets.reduce((n, d) => n + d.remaining, 0);
  const last = sessionStorage.getItem(LAST_DATASET_KEY) || "";
  return html`
          <table class="data queue">
            <thead><tr><th>Dataset</th><th class="num">Images left for you</th><th class="num">Returned to you</th></tr></thead>
            <tbody>${datasets.map((d) => html`<tr data-dataset="${d.id}"><td>${d.name}</td><td class="num">${d.remaining}</td>
              <td class="num returned">${d.returned ? html`<span class="badge off">${d.returned} returned</span>` : "0"}</td></tr>`)}</tbody>
          </table>
          <div class="row">
            <label class="inline">Dataset
              <select name="dataset">
                <option value="">All datasets (${plural(total, "image")})</option>
                ${datasets.map((d) => html`<option value="${d.id}" ${String(d.id) === last ? html`selected` : ""}>
                  ${d.name} (${d.remaining})</option>`)}
              </select></label>
            <button type="button" class="primary start" ${total ? "" : html`disabled`}>Start annotating</button>
          </div>`;
}

if (!customElements.get("annotation-queue")) {
  linkStylesheet(new URL("./annotation-queue.css", import.meta.url));
  customElements.define("annotation-queue", AnnotationQueue);
}
