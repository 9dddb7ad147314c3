// A dataset's masks panel (the dataset page): agreement (per dataset, by how the masks were
// made, and per annotator, to spot careless work), mask sets (freeze the filtered consensus), export (PNG zip, COCO RLE of
// the masks chosen under Agreement) and import of existing masks.
// Usage: import "../components/masks-panel/masks-panel.js";   // defines <masks-panel>
//   <masks-panel dataset="3"></masks-panel>
// Attribute: dataset (the dataset's id), read when it is first put on the page.

import { api, uploadWithProgress } from "../../lib/api.js";
import { dateTime, durationMs, number, percent, plural } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";

const iou = (v) => number(v, 3); // IoU and correlations, 0..1
// how the masks were made (the agreement's split by provenance)
const PROVENANCE_KINDS = {
  drawn: "by hand", assisted: "with the wand, superpixels or refine",
  proposal: "from a machine proposal", unrecorded: "not recorded (imports, older saves)",
};

export class MasksPanel extends HTMLElement {
  /** Rendered once, when first put on the page; the mask sets load then. */
  connectedCallback() {
    if (this.loading) return;
    const datasetId = Number(this.getAttribute("dataset"));
    render(this, panelMarkup());
    bindExport(this, datasetId);
    bindAgreement(this, datasetId);
    const loadSets = bindMaskSets(this, datasetId);
    bindImport(this, datasetId);
    this.loading = loadSets().catch((err) => {
      render(this.querySelector("table.sets tbody"), html`<tr><td colspan="6" class="form-error">${err.message}</td></tr>`);
    });
  }
}

function panelMarkup() {
  return html`
    <div class="card stack agreement">
      <div class="row"><h2 style="margin:0">Agreement</h2><span class="spacer"></span>
        <label class="inline">Masks <select name="statuses">
          <option value="accepted">accepted</option>
          <option value="accepted,submitted">accepted + submitted</option></select></label>
        <button type="button" class="compute">Compute</button></div>
      <div class="agreement-out muted">Pairwise IoU, split-half human ceiling and per-annotator quality.</div>
    </div>
    <div class="card stack mask-sets">
      <h2>Mask sets</h2>
      <div class="sets-box"><table class="data sets"><thead><tr><th>Name</th><th>Filter</th><th class="num">Images</th>
        <th>Hash</th><th>Created</th><th>Export</th></tr></thead><tbody></tbody></table></div>
      <form class="row freeze" novalidate>
        <label>Name <input name="name" required></label>
        <label class="inline"><input type="checkbox" name="accepted" checked> accepted</label>
        <label class="inline"><input type="checkbox" name="submitted"> submitted</label>
        <label>Min. annotators <input name="min_annotators" type="number" min="1" value="1" style="width:90px"></label>
        <label>Min. agreement (IoU) <input name="min_agreement" type="number" min="0" max="1" step="0.05" style="width:110px"></label>
        <label class="inline" title="A machine proposal can anchor what people mark"><input type="checkbox" name="exclude_proposals">
          leave out masks seeded by a proposal</label>
        <button type="submit" class="primary" style="align-self:flex-end">Freeze consensus</button>
      </form>
      <p class="form-error" role="alert" hidden></p>
      <p class="freeze-note muted" role="status" hidden></p>
    </div>
    <div class="card stack export-import">
      <h2>Export and import masks</h2>
      <div class="row">
        <a class="button export-png" download>Export PNG masks (zip)</a>
        <a class="button export-coco" download>Export COCO RLE (JSON)</a>
        <span class="muted">of the masks selected under Agreement.</span>
      </div>
      <form class="row import-masks" novalidate>
        <label>Source name <input name="name" required placeholder="e.g. cub"></label>
        <label>Format <select name="format"><option value="png">PNG zip</option>
          <option value="coco">COCO RLE JSON</option><option value="cub">CUB-200 segmentations (zip)</option></select></label>
        <label>File <input name="file" type="file" required></label>
        <button type="submit" style="align-self:flex-end">Import masks</button>
      </form>
      <progress class="import-progress" max="1" value="0" hidden></progress>
      <p class="form-error import-error" role="alert" hidden></p>
      <p class="form-ok import-ok" role="status" hidden></p>
    </div>`;
}

/** The export links follow the statuses chosen under Agreement. */
function bindExport(el, datasetId) {
  const statusesSel = el.querySelector("select[name=statuses]");
  const exportLinks = () => {
    const s = encodeURIComponent(statusesSel.value);
    el.querySelector(".export-png").href = `/api/datasets/${datasetId}/masks/export?format=png&statuses=${s}`;
    el.querySelector(".export-coco").href = `/api/datasets/${datasetId}/masks/export?format=coco&statuses=${s}`;
  };
  statusesSel.addEventListener("change", exportLinks);
  exportLinks();
}

/** "Compute": the dataset's agreement and each annotator's, for the chosen statuses. */
function bindAgreement(el, datasetId) {
  const statusesSel = el.querySelector("select[name=statuses]");
  const out = el.querySelector(".agreement-out");
  el.querySelector("button.compute").addEventListener("click", async (e) => {
    e.target.disabled = true;
    out.textContent = "Computing…";
    try {
      const a = await api(`/api/datasets/${datasetId}/agreement?statuses=${encodeURIComponent(statusesSel.value)}`);
      out.classList.remove("muted");
      render(out, agreementMarkup(a));
    } catch (ex) {
      out.textContent = ex.message;
    } finally {
      e.target.disabled = false;
    }
  });
}

function agreementMarkup(a) {
  return html`
        <p>Images with masks: ${a.num_images} · mean pairwise IoU <strong>${iou(a.mean_pairwise_iou)}</strong> ·
          split-half IoU (human ceiling) <strong>${iou(a.split_half_iou)}</strong> ·
          split-half correlation <strong>${iou(a.split_half_correlation)}</strong>
          (whole group, Spearman-Brown <strong>${iou(a.split_half_reliability)}</strong>)</p>
        <p class="muted">Split-half: each image's annotators in two random halves, ${a.splits} times; the halves' consensus maps compared, averaged over images and splits.</p>
        ${a.by_provenance && a.by_provenance.length ? html`<table class="data provenance"><thead><tr>
          <th>Masks made</th><th class="num">Masks</th><th class="num">Images</th>
          <th class="num">Pairwise IoU within</th><th class="num">Agreement with others (IoU)</th></tr></thead>
          <tbody>${a.by_provenance.map((p) => html`<tr><td>${PROVENANCE_KINDS[p.kind] || p.kind}</td>
            <td class="num">${p.num_masks}</td><td class="num">${p.num_images}</td>
            <td class="num">${iou(p.mean_pairwise_iou)}</td>
            <td class="num">${iou(p.agreement_with_others)}</td></tr>`)}</tbody></table>` : ""}
        <table class="data annotators"><thead><tr><th>Annotator</th><th class="num">Masks</th>
          <th class="num">Agreement with others (IoU)</th><th class="num">Median time</th>
          <th class="num">Mean area</th></tr></thead>
          <tbody>${a.annotators.map((q) => html`<tr>
            <td>${q.annotator}</td><td class="num">${q.num_masks}</td>
            <td class="num">${iou(q.agreement_with_others)}</td>
            <td class="num">${durationMs(q.median_active_ms)}</td>
            <td class="num">${percent(q.mean_area_fraction)}</td></tr>`)}</tbody></table>`;
}

// a mask set's filter, key by key, as the freeze form words it
const FILTER_WORDS = {
  statuses: (v) => `masks ${[].concat(v).join(" + ")}`,
  min_annotators: (v) => `at least ${plural(v, "annotator")} per image`,
  min_agreement: (v) => (v === null || v === undefined ? "any agreement" : `agreement (IoU) at least ${v}`),
  empty_masks_excluded: (v) => (v ? `${plural(v, "empty mask")} left out` : ""),
  exclude_proposals: (v) => (v ? "masks seeded by a proposal left out" : ""),
  proposal_masks_excluded: (v) => (v ? `(${v})` : ""),
};

/** A mask set's filter as words ("masks accepted · at least 2 annotators per image · any
 * agreement"), never as JSON; a key this page does not know reads "key: value". */
function filterText(filter) {
  return Object.entries(filter || {}).map(([k, v]) => {
    if (FILTER_WORDS[k]) return FILTER_WORDS[k](v);
    const value = Array.isArray(v) ? v.join(", ") : v === null || v === undefined ? "any"
      : typeof v === "boolean" ? (v ? "yes" : "no") : typeof v === "object" ? Object.entries(v).map(([a, b]) => `${a} ${b}`).join(", ") : v;
    return `${k.replace(/_/g, " ")}: ${value}`;
  }).filter(Boolean).join(" · ").replace(" · (", " (");
}

/** The mask sets table and the "Freeze consensus" form; returns the function that (re)loads the table. */
function bindMaskSets(el, datasetId) {
  const setsBody = el.querySelector("table.sets tbody");
  async function loadSets() {
    const res = await api(`/api/datasets/${datasetId}/mask-sets`);
    render(setsBody, res.data.length ? html`${res.data.map((m) => html`<tr>
        <td class="set-name">${m.name}</td><td class="muted set-filter">${filterText(m.filter)}</td><td class="num">${m.num_images}</td>
        <td><code title="${m.hash}">${m.hash.slice(0, 12)}</code></td>
        <td>${dateTime(m.created_at)}</td>
        <td><a href="/api/datasets/${datasetId}/masks/export?format=png&mask_set_id=${m.id}" download>PNG</a> ·
          <a href="/api/datasets/${datasetId}/masks/export?format=coco&mask_set_id=${m.id}" download>COCO</a></td>
      </tr>`)}` : html`<tr><td colspan="6" class="muted">No mask set yet.</td></tr>`);
  }
  const freeze = el.querySelector("form.freeze");
  freeze.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = el.querySelector(".mask-sets .form-error");
    const note = el.querySelector(".mask-sets .freeze-note");
    err.hidden = note.hidden = true;
    const statuses = ["accepted", "submitted"].filter((s) => freeze[s].checked);
    const body = {
      name: freeze.name.value.trim(),
      statuses,
      min_annotators: Number(freeze.min_annotators.value) || 1,
      min_agreement: freeze.min_agreement.value === "" ? null : Number(freeze.min_agreement.value),
      exclude_proposals: freeze.exclude_proposals.checked,
    };
    if (!body.name || !statuses.length) {
      err.textContent = "Give the mask set a name and choose which masks it takes.";
      err.hidden = false;
      return;
    }
    try {
      const res = await api(`/api/datasets/${datasetId}/mask-sets`, { method: "POST", body });
      // the same masks frozen already: the answer is that set, with a sentence naming it
      if (res.message) {
        note.textContent = res.message;
        note.hidden = false;
      } else {
        freeze.name.value = "";
      }
      await loadSets();
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    }
  });
  return loadSets;
}

/** "Import masks": a PNG zip, COCO RLE JSON or CUB-200 segmentations, uploaded with progress. */
function bindImport(el, datasetId) {
  const imp = el.querySelector("form.import-masks");
  imp.addEventListener("submit", async (e) => {
    e.preventDefault();
    const err = el.querySelector(".import-error");
    const ok = el.querySelector(".import-ok");
    const bar = el.querySelector(".import-progress");
    err.hidden = ok.hidden = true;
    const file = imp.file.files[0];
    if (!imp.name.value.trim() || !file) {
      err.textContent = "Give the source a name and choose a file.";
      err.hidden = false;
      return;
    }
    const data = new FormData();
    data.append("name", imp.name.value.trim());
    data.append("format", imp.format.value);
    data.append("file", file, file.name);
    bar.hidden = false;
    try {
      const res = await uploadWithProgress(`/api/datasets/${datasetId}/masks/import`, data, {
        onProgress: (f) => { bar.value = f; },
        onUploaded: () => bar.removeAttribute("value"),
      });
      ok.textContent = `Imported ${plural(res.imported, "mask")} as ${res.annotator}.`;
      ok.hidden = false;
      imp.reset();
    } catch (ex) {
      err.textContent = ex.message;
      err.hidden = false;
    } finally {
      bar.hidden = true;
      bar.value = 0;
    }
  });
}

if (!customElements.get("masks-panel")) {
  linkStylesheet(new URL("./masks-panel.css", import.meta.url));
  customElements.define("masks-panel", MasksPanel);
}
