// Dataset detail (#/datasets/{id}): classes, splits, editable instructions / annotators per
// image / description, which annotators may work on it (assignment), a paged grid of image
// thumbnails (filter by split), and the masks panel (agreement, mask sets, export / import;
// components/masks-panel/).
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { plural } from "../lib/format.js";
import { html, render } from "../lib/html.js";
import "../components/masks-panel/masks-panel.js";

const PAGE = 50;

export async function mount(root, { params }) {
  const id = Number(params[0]);
  const ds = await api(`/api/datasets/${id}`);
  const splits = ds.splits || {};
  render(root, html`
    <section class="page">
      <p><a href="#/datasets">← Datasets</a></p>
      <h1>${ds.name}</h1>
      <p class="muted">${plural(ds.num_images, "image")} · ${plural(ds.num_classes, "class", "classes")} ·
        train ${splits.train ?? 0} / test ${splits.test ?? 0}</p>
      <div class="row" style="align-items:flex-start">
        <form class="card stack settings" style="flex:2;min-width:320px" novalidate>
          <h2>Annotation settings</h2>
          <label>Description <input name="description" value="${ds.description || ""}"></label>
          <label>Instructions shown to annotators
            <textarea name="instructions" rows="5">${ds.instructions || ""}</textarea></label>
          <label>Annotators per image
            <input name="annotators_per_image" type="number" min="1" max="100" step="1"
              value="${ds.annotators_per_image}" style="max-width:120px"></label>
          <div class="row">
            <label title="A machine proposal can anchor what people mark: every mask records whether it started from one">Machine proposals for annotators
              <select name="proposals">
                <option value="off">off</option>
                <option value="saliency">classical saliency (spectral residual)</option>
                <option value="run">a finished run's salience maps</option></select></label>
            <label class="proposal-run" hidden>Run id <input name="proposal_run" type="number" min="1" style="max-width:100px"
              value="${ds.proposals && ds.proposals.startsWith("run:") ? ds.proposals.slice(4) : ""}"></label>
          </div>
          <p class="form-error" role="alert" hidden></p>
          <p class="form-ok" role="status" hidden></p>
          <div class="row"><button type="submit" class="primary">Save settings</button></div>
        </form>
        <div class="card" style="flex:1;min-width:260px">
          <h2>Classes</h2>
          <table class="data classes">
            <thead><tr><th>#</th><th>Name</th><th class="num">Images</th></tr></thead>
            <tbody>${(ds.classes || []).map((c) => html`
              <tr><td>${c.index}</td><td>${c.name}</td><td class="num">${c.num_images}</td></tr>`)}</tbody>
          </table>
        </div>
      </div>
      <form class="card stack assignments" novalidate>
        <h2>Annotators</h2>
        <p class="muted assign-state"></p>
        <div class="assign-list row"></div>
        <p class="form-error" role="alert" hidden></p>
        <p class="form-ok" role="status" hidden></p>
        <div class="row"><button type="submit" class="primary">Save annotators</button>
          <button type="button" class="open-all">Open to every annotator</button></div>
      </form>
      <div class="card">
        <div class="row">
          <h2 style="margin:0">Images</h2>
          <span class="spacer"></span>
          <label class="inline">Split
            <select name="split"><option value="">all</option><option>train</option><option>test</option></select></label>
          <span class="muted count"></span>
        </div>
        <div class="thumbs" style="margin-top:12px"></div>
        <div class="row" style="margin-top:12px"><button type="button" class="more" hidden>Load more</button></div>
      </div>
      <masks-panel class="masks-panel" dataset="${id}"></masks-panel>
    </section>`);

  const form = root.querySelector("form.settings");
  const showRunField = () => { form.querySelector(".proposal-run").hidden = form.proposals.value !== "run"; };
  form.proposals.value = !ds.proposals ? "off" : ds.proposals.startsWith("run:") ? "run" : ds.proposals;
  showRunField();
  form.proposals.addEventListener("change", showRunField);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = form.querySelector(".form-error");
    const ok = form.querySelector(".form-ok");
    err.hidden = ok.hidden = true;
    const n = Number(form.annotators_per_image.value);
    if (!Number.isInteger(n) || n < 1) {
      err.textContent = "Annotators per image must be a whole number of at least 1.";
      err.hidden = false;
      return;
    }
    try {
      await api(`/api/datasets/${id}`, {
        method: "PATCH",
        body: { description: form.description.value, instructions: form.instructions.value, annotators_per_image: n,
          proposals: form.proposals.value === "run" ? `run:${form.proposal_run.value}` : form.proposals.value },
      });
      ok.textContent = "Saved.";
      ok.hidden = false;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    }
  });

  // ---- who may annotate: none ticked = every annotator ----
  const assignForm = root.querySelector("form.assignments");
  function showAssignments(a) {
    assignForm.querySelector(".assign-state").textContent = a.open_to_all
      ? "Open to every annotator. Tick annotators to limit the dataset to them."
      : `Assigned to ${a.assigned_user_ids.length} annotator(s): only they see this dataset and get its images.`;
    render(assignForm.querySelector(".assign-list"), a.annotators.length
      ? html`${a.annotators.map((p) => html`<label class="inline"><input type="checkbox" name="annotator"
          value="${p.id}" ${p.assigned ? html`checked` : ""}> ${p.username}</label>`)}`
      : html`<span class="muted">No annotator accounts yet.</span>`);
  }
  async function saveAssignments(userIds) {
    const err = assignForm.querySelector(".form-error");
    const ok = assignForm.querySelector(".form-ok");
    err.hidden = ok.hidden = true;
    try {
      const a = await api(`/api/datasets/${id}/assignments`, { method: "PUT", body: { user_ids: userIds } });
      showAssignments(a);
      ok.textContent = "Saved.";
      ok.hidden = false;
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    }
  }
  assignForm.addEventListener("submit", (e) => {
    e.preventDefault();
    saveAssignments([...assignForm.querySelectorAll("input[name=annotator]:checked")].map((b) => Number(b.value)));
  });
  assignForm.querySelector(".open-all").addEventListener("click", () => saveAssignments([]));
  showAssignments(await api(`/api/datasets/${id}/assignments`));

  const grid = root.querySelector(".thumbs");
  const more = root.querySelector("button.more");
  const countEl = root.querySelector(".count");
  const splitSel = root.querySelector("select[name=split]");
  let offset = 0;
  let total = 0;

  async function loadPage(reset) {
    if (reset) { offset = 0; grid.innerHTML = ""; }
    const split = splitSel.value;
    const q = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
    if (split) q.set("split", split);
    const res = await api(`/api/datasets/${id}/images?${q}`);
    total = res.count;
    offset += res.data.length;
    grid.insertAdjacentHTML("beforeend", String(html`${res.data.map((im) => html`
      <figure class="thumb" style="margin:0" title="${im.filename} (${im.width}×${im.height})">
        <img src="/api/images/${im.id}/file" alt="${im.filename}" loading="lazy">
        <figcaption class="cap"><span>${im.class_name}</span>
          <span class="muted">${im.split}${im.num_annotations ? html` · ${plural(im.num_annotations, "mask")}` : ""}</span></figcaption>
      </figure>`)}`));
    countEl.textContent = `${Math.min(offset, total)} of ${total}`;
    more.hidden = offset >= total;
  }
  splitSel.addEventListener("change", () => loadPage(true));
  more.addEventListener("click", () => loadPage(false));
  await loadPage(true);
  await root.querySelector("masks-panel").loading;
}
