// Dataset import form: name, description and a .zip (ImageFolder tree, CIFAR-10/100 python
// batches or CUB-200-2011, recognised by the server from the layout), uploaded with a live
// progress bar, then a "processing" state until the server answers; the server's sentence is
// shown on failure. On success it dispatches `imported` (a CustomEvent that bubbles; detail: the
// dataset as the server returned it).
// Usage: import "../components/upload-form/upload-form.js";   // defines <upload-form>
//   <upload-form></upload-form>
//   el.addEventListener("imported", (e) => refresh(e.detail));
// The form inside keeps the class `upload-form` (the styles and the browser tests select it).

import { uploadWithProgress } from "../../lib/api.js";
import { plural, wholePercent } from "../../lib/format.js";
import { html, render } from "../../lib/html.js";
import { linkStylesheet } from "../../lib/styles.js";

export class UploadForm extends HTMLElement {
  /** Rendered once, when first put on the page (moving it keeps what is typed in). */
  connectedCallback() {
    if (!this.querySelector("form.upload-form")) renderForm(this);
  }
}

/** The form and its submit handler, rendered into the element. */
function renderForm(el) {
  render(el, html`
    <form class="card stack upload-form" novalidate>
      <h2>Import a dataset</h2>
      <p class="muted formats">A .zip of one of these, recognised by its layout (it may sit in one top folder):
        an ImageFolder tree with one folder per class (optionally inside <code>train/</code> and
        <code>test/</code> or <code>val/</code>, kept as the split);
        CIFAR-10 or CIFAR-100, python version (<code>cifar-10-batches-py</code>, <code>cifar-100-python</code>);
        or CUB-200-2011 (<code>images/</code>, its txt files and <code>segmentations/</code>, imported as accepted masks).
        Uploads are limited in size (512 MiB unless the server sets another limit): import larger trees, such as
        the full CUB-200-2011, with <code>python -m backend.cli import-dataset</code>.</p>
      <div class="row">
        <label>Name <input name="name" required autocomplete="off"></label>
        <label class="grow">Description <input name="description" autocomplete="off"></label>
      </div>
      <div class="row">
        <label>Zip file <input name="file" type="file" accept=".zip,application/zip" required></label>
        <label>Test share <input name="test_fraction" type="number" min="0" max="0.9" step="0.05" value="0.2" style="width:90px"
          title="For a tree without its own split: the share of each class held out as test images (0 to 0.9)"></label>
      </div>
      <p class="muted">Without a split of its own, each class gives the same share of its images to the test split.</p>
      <div class="upload-progress" hidden>
        <div class="bar" role="progressbar" aria-valuemin="0" aria-valuemax="100" aria-valuenow="0"><span></span></div>
        <span class="upload-status muted"></span>
      </div>
      <p class="form-error" role="alert" hidden></p>
      <p class="form-ok" role="status" hidden></p>
      <div class="row"><button type="submit" class="primary">Import</button></div>
    </form>`);
  const form = el.querySelector("form");
  const progress = form.querySelector(".upload-progress");
  const bar = form.querySelector(".bar");
  const fill = bar.querySelector("span");
  const status = form.querySelector(".upload-status");
  const err = form.querySelector(".form-error");
  const ok = form.querySelector(".form-ok");

  const setProgress = (f) => {
    const pct = wholePercent(f);
    fill.style.width = `${pct}%`;
    bar.setAttribute("aria-valuenow", String(pct));
    status.textContent = `Uploading… ${pct}%`;
  };

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    err.hidden = ok.hidden = true;
    const file = form.file.files[0];
    if (!form.name.value.trim()) { err.textContent = "Give the dataset a name."; err.hidden = false; return; }
    if (!file) { err.textContent = "Choose a .zip file to import."; err.hidden = false; return; }
    const share = Number(form.test_fraction.value);
    if (form.test_fraction.value.trim() === "" || !(share >= 0 && share <= 0.9)) {
      err.textContent = "The test share is a number from 0 to 0.9."; err.hidden = false; return;
    }
    const data = new FormData();
    data.append("name", form.name.value.trim());
    data.append("test_fraction", String(share));
    if (form.description.value.trim()) data.append("description", form.description.value.trim());
    data.append("file", file, file.name);
    const button = form.querySelector("button");
    button.disabled = true;
    progress.hidden = false;
    bar.classList.remove("processing");
    setProgress(0);
    try {
      const ds = await uploadWithProgress("/api/datasets/import", data, {
        onProgress: setProgress,
        onUploaded: () => {
          bar.classList.add("processing");
          status.textContent = "Processing on the server… (checking and storing every image)";
        },
      });
      progress.hidden = true;
      ok.textContent = `Imported “${ds.name}”: ${plural(ds.num_images, "image")} in ${plural(ds.num_classes, "class", "classes")}.`;
      ok.hidden = false;
      form.reset();
      el.dispatchEvent(new CustomEvent("imported", { detail: ds, bubbles: true }));
    } catch (ex) {
      progress.hidden = true;
      err.textContent = ex.message;
      err.hidden = false;
    } finally {
      button.disabled = false;
    }
  });
}

if (!customElements.get("upload-form")) {
  linkStylesheet(new URL("./upload-form.css", import.meta.url));
  customElements.define("upload-form", UploadForm);
}
