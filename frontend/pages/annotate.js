// Annotation page (#/annotate/{imageId}?dataset={id}): draw the salient region of one image.
// Every stroke is kept: debounced 500 ms after a stroke the mask goes to localStorage and the
// save queue PUTs it with retries; a reload restores a local copy newer than the server's.
// Submit flushes the queue then marks the latest revision submitted and opens the next image.
// The drawing surface is components/mask-canvas/, its tool panel <mask-toolbar>, the hotkey list
// <hotkey-table>; this page keeps the strokes (StrokeKeeper), the preferences, submit and skip.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";
import { ActiveTimer } from "../lib/active-time.js";
import { clock, plural } from "../lib/format.js";
import { LAST_DATASET_KEY, openNext } from "../lib/next-image.js";
import { DEFAULT_KEYS, MaskCanvas, defaultToolSizes } from "../components/mask-canvas/mask-canvas.js";
import "../components/hotkey-table/hotkey-table.js";
import "../components/mask-toolbar/mask-toolbar.js";

const STASH_DEBOUNCE_MS = 500;
const KEYS_STORAGE = "salience-hotkeys:v1";
const COLOR_STORAGE = "salience-mask-color"; // before preferences were kept per annotator
// Under this share of the image a mask is "tiny" (as the server's TINY_FRACTION): submit asks.
const TINY_FRACTION = 0.005;
const SKIP_REASONS = [
  "No clear object of the class in the image",
  "Image is corrupt or unreadable",
  "Unsure what is salient",
  "Inappropriate content",
];

/** The annotator's remapped hotkeys (one key per row of DEFAULT_KEYS), or null for defaults.
 * A list kept before rows were added is shorter: MaskCanvas.setKeys gives the new rows their
 * default keys where still free. */
function loadKeys() {
  try {
    const k = JSON.parse(localStorage.getItem(KEYS_STORAGE));
    return Array.isArray(k) && k.length && k.length <= DEFAULT_KEYS.length ? k : null;
  } catch {
    return null;
  }
}

function loadImage(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error("The image could not be loaded."));
    img.src = src;
  });
}

function blobToDataUrl(blob) {
  return new Promise((resolve, reject) => {
    const r = new FileReader();
    r.onload = () => resolve(r.result);
    r.onerror = () => reject(r.error);
    r.readAsDataURL(blob);
  });
}

/** The annotator's drawing preferences (colour, zoom relative to the fitted view, and under
 * sizes[datasetId] the brush and eraser sizes picked on that dataset), kept in this browser per
 * user id so a shared machine keeps each one's. A size is kept only where it differs from the
 * image's default (defaultToolSizes: a share of the shorter side), so a dataset where none was
 * picked follows each image's size; sizes kept per user only (before v1 had sizes) are ignored. */
const prefsKey = (userId) => `salience-annotate-prefs:v1:${userId || "anon"}`;
function loadPrefs(userId) {
  try {
    const p = JSON.parse(localStorage.getItem(prefsKey(userId)));
    return p && typeof p === "object" ? p : {};
  } catch {
    return {};
  }
}
function savePrefs(userId, prefs) {
  try { localStorage.setItem(prefsKey(userId), JSON.stringify(prefs)); } catch { /* full: not worth an error */ }
}

/** The sizes picked on this dataset ({brush?, eraser?}), from the preferences. */
function datasetSizes(prefs, datasetId) {
  const all = prefs.sizes && typeof prefs.sizes === "object" ? prefs.sizes : {};
  const mine = all[String(datasetId)];
  return mine && typeof mine === "object" ? mine : {};
}

/** Keep the sizes (per dataset, those that differ from the image's default) and the zoom
 * 200 ms after they last changed; returns the cleanup. */
function rememberPrefs(mc, userId, datasetId) {
  let timer = null;
  const defaults = defaultToolSizes(mc.width, mc.height);
  const later = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      const prefs = loadPrefs(userId);
      const sizes = { ...datasetSizes(prefs, datasetId) };
      for (const [tool, size] of Object.entries(mc.sizes)) {
        if (size === defaults[tool]) delete sizes[tool];
        else sizes[tool] = size;
      }
      delete prefs.brush; // the per-user sizes of before are not kept
      delete prefs.eraser;
      savePrefs(userId, {
        ...prefs,
        sizes: { ...(prefs.sizes || {}), [String(datasetId)]: sizes },
        zoom: Math.round(mc.zoomRelativeToFit * 1000) / 1000,
      });
    }, 200);
  };
  mc.addEventListener("toolchange", later);
  mc.addEventListener("viewchange", later);
  return () => clearTimeout(timer);
}

function pageMarkup(data, width, height) {
  const { image, annotation } = data;
  return html`
    <section class="annotate">
      <mask-toolbar></mask-toolbar>
      <div class="canvas-host" aria-label="Image ${image.id}, draw the salient region"></div>
      <aside class="side">
        <div class="save-status" data-state="saved" role="status" aria-live="polite">saved</div>
        <p class="note muted" hidden></p>
        <div>
          <div class="muted small">${image.dataset_name}${data.remaining !== undefined ? ` · ${data.remaining} left` : ""}</div>
          <h2 class="class-name">${image.class_name}</h2>
          <div class="muted small">${width} × ${height} px${annotation && annotation.revision
            ? ` · revision ${annotation.revision} (${annotation.status})` : ""}
            · time on task <span class="active-time">0:00</span></div>
        </div>
        ${annotation && annotation.status === "rejected" ? html`<div class="review-note">
          <strong>Returned by the reviewer.</strong> ${annotation.review_comment || "Please redo this mask."}</div>` : ""}
        <div class="instructions">${image.instructions ? image.instructions
          : html`<span class="muted">Paint the region of the image that shows why it is a ${image.class_name}.</span>`}</div>
        <div class="row">
          <button type="button" class="primary submit" title="Submit (Ctrl+Enter)">Submit</button>
          <button type="button" class="skip-open">Skip…</button>
        </div>
        <div class="small-mask-warning card stack" role="alertdialog" aria-label="Small mask" hidden>
          <p class="warning-text"></p>
          <div class="row"><button type="button" class="primary confirm-submit">Submit anyway</button>
            <button type="button" class="keep-drawing">Keep drawing</button></div>
        </div>
        <form class="skip-form stack card" hidden>
          <label>Why skip this image?
            <select name="reason">${SKIP_REASONS.map((r) => html`<option>${r}</option>`)}<option value="">Other…</option></select></label>
          <input name="other" placeholder="Reason" hidden>
          <div class="row"><button type="submit" class="danger">Skip image</button>
            <button type="button" class="skip-cancel">Cancel</button></div>
        </form>
        <div class="proposal-controls card stack" hidden>
          <strong>Machine proposal</strong>
          <span class="muted small">This dataset offers a starting mask (${image.proposals || ""}); it is
            recorded with your mask when you accept it.</span>
          <label>Area <span class="proposal-area"></span>
            <input type="range" min="1" max="90" name="proposal-area"></label>
          <button type="button" class="proposal-show" title="Show the proposal (P)">Show proposal</button>
        </div>
        <p class="form-error" role="alert" hidden></p>
        <hotkey-table></hotkey-table>
      </aside>
    </section>`;
}

/** The toolbar and the hotkey list over the canvas, with the annotator's kept colour and keys. */
function bindTools(root, mc, prefs, userId) {
  const toolbar = root.querySelector("mask-toolbar");
  toolbar.canvas = mc;
  toolbar.useColor(prefs.color || localStorage.getItem(COLOR_STORAGE));
  toolbar.addEventListener("colorchange", (e) => savePrefs(userId, { ...loadPrefs(userId), color: e.detail.color }));
  const hotkeys = root.querySelector("hotkey-table");
  hotkeys.keys = mc.keys;
  hotkeys.addEventListener("keyschange", (e) => {
    mc.setKeys(e.detail.keys);
    if (e.detail.reset) localStorage.removeItem(KEYS_STORAGE);
    else localStorage.setItem(KEYS_STORAGE, JSON.stringify(e.detail.keys));
    toolbar.sync();
  });
}

/** Load the starting mask: a local copy newer than the server's, else the server's. Returns
 * the time on task so far and the server revision the drawing builds on. */
async function restoreMask(root, mc, queue, data, { imageId, width, height }) {
  const serverRev = data.annotation ? data.annotation.revision : 0;
  let local = queue.read(imageId);
  if (local && (local.width !== width || local.height !== height)) local = null;
  const useLocal = local && !local.synced && serverRev <= (local.knownRevision || 0);
  let activeMs = data.annotation ? data.annotation.active_ms || 0 : 0;
  if (useLocal) {
    mc.loadMask(await loadImage(local.dataUrl), { provenance: local.provenance, proposalSource: local.proposalSource });
    activeMs = Math.max(activeMs, local.activeMs || 0);
    const note = root.querySelector(".note");
    note.textContent = "Restored your latest drawing, kept in this browser.";
    note.hidden = false;
    queue.kick();
  } else {
    if (data.annotation && data.annotation.mask_png_base64) {
      mc.loadMask(await loadImage(`data:image/png;base64,${data.annotation.mask_png_base64}`), {
        provenance: data.annotation.provenance, proposalSource: data.annotation.proposal_source,
      });
    }
    if (local && serverRev > (local.knownRevision || 0)) queue.remove(imageId); // server is newer
    queue.noteServerRevision(imageId, serverRev);
  }
  return { activeMs, knownRevision: Math.max(serverRev, useLocal ? local.knownRevision || 0 : 0) };
}

/** Bytes from base64 text. */
function fromBase64(b64) {
  const text = atob(b64);
  const out = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) out[i] = text.charCodeAt(i);
  return out;
}

/** A superpixel label map as the server sends it: zlib-compressed little-endian uint16. */
async function inflateLabels(b64) {
  const stream = new Blob([fromBase64(b64)]).stream().pipeThrough(new DecompressionStream("deflate"));
  return new Uint16Array(await new Response(stream).arrayBuffer());
}

/** The grey (or alpha) values of a PNG drawn at width x height, one byte per pixel. */
async function pngValues(b64, width, height) {
  const img = await loadImage(`data:image/png;base64,${b64}`);
  const c = document.createElement("canvas");
  c.width = width;
  c.height = height;
  const ctx = c.getContext("2d", { willReadFrequently: true });
  ctx.drawImage(img, 0, 0, width, height);
  const d = ctx.getImageData(0, 0, width, height).data;
  let hasAlpha = false;
  for (let i = 3; i < d.length; i += 4) if (d[i] < 255) { hasAlpha = true; break; }
  const out = new Uint8Array(width * height);
  for (let i = 0; i < out.length; i++) out[i] = hasAlpha ? d[i * 4 + 3] : d[i * 4];
  return out;
}

/** The pixels of a salience map (0..255) at or above the level that marks `share` of the image
 * (the highest-ranked pixels first; ties at the level are all in). */
function topShare(values, share) {
  const hist = new Float64Array(256);
  for (let i = 0; i < values.length; i++) hist[values[i]]++;
  const want = share * values.length;
  let level = 255, n = hist[255];
  while (level > 1 && n + hist[level - 1] <= want) { level--; n += hist[level]; }
  const bits = new Uint8Array(values.length);
  for (let i = 0; i < values.length; i++) bits[i] = values[i] >= level ? 1 : 0;
  return bits;
}

const PROPOSAL_AREA = 0.2; // the share of the image a proposal marks at first

/** The assisted tools' server side: superpixel label maps (fetched once per image and size,
 * then kept: the brush works offline), GrabCut refinement, and the dataset's proposals, which
 * are requested only where the dataset has them on. Returns the cleanup. */
function bindAids(root, mc, { data, imageId, width, height, showError }) {
  const loading = new Set();
  const onSuperpixels = async (e) => {
    const size = e.detail.size;
    if (loading.has(size)) return;
    loading.add(size);
    try {
      const res = await api(`/api/annotate/images/${imageId}/superpixels?size=${encodeURIComponent(size)}`);
      mc.setSuperpixels(size, await inflateLabels(res.labels), res.count);
    } catch (err) {
      loading.delete(size);
      showError(`The superpixels could not be loaded: ${err.message}`);
    }
  };
  const onRefine = async (e) => {
    try {
      const body = e.detail.box ? { box: e.detail.box } : {
        mask_png_base64: (await blobToDataUrl(await mc.toPngBlob())).split(",")[1],
      };
      if (!e.detail.box && !mc.countSalient()) { showError("Draw a rough mask or drag a box around the object to refine."); return; }
      showError("");
      const res = await api(`/api/annotate/images/${imageId}/refine`, { method: "POST", body });
      const bits = await pngValues(res.mask_png_base64, width, height);
      mc.propose(bits.map((v) => (v >= 128 ? 1 : 0)), { kind: "refined", mode: e.detail.box ? "add" : "replace" });
    } catch (err) { showError(err.message); }
  };
  mc.addEventListener("superpixelsneeded", onSuperpixels);
  mc.addEventListener("refinerequest", onRefine);
  const source = data.image.proposals;
  const box = root.querySelector(".proposal-controls");
  if (!source) return () => {};
  // proposals on: a map once per visit, thresholded here to the area the annotator picks
  box.hidden = false;
  const slider = box.querySelector("input[name=proposal-area]");
  const label = box.querySelector(".proposal-area");
  let values = null;
  const show = async () => {
    try {
      if (!values) {
        const res = await api(`/api/annotate/images/${imageId}/proposal`);
        values = await pngValues(res.map_png_base64, width, height);
      }
      mc.propose(topShare(values, Number(slider.value) / 100), { kind: "proposal", source, mode: "add" });
    } catch (err) { showError(`No proposal: ${err.message}`); }
  };
  const onArea = () => {
    label.textContent = `${slider.value} %`;
    if (mc.pendingProposal === "proposal") show();
  };
  slider.value = String(Math.round(PROPOSAL_AREA * 100));
  label.textContent = `${slider.value} %`;
  slider.addEventListener("input", onArea);
  box.querySelector(".proposal-show").addEventListener("click", () => { show(); mc.container.focus({ preventScroll: true }); });
  mc.addEventListener("proposalrequest", show);
  if (!mc.countSalient()) show(); // a fresh mask starts from the proposal, to accept or discard
  return () => { mc.removeEventListener("proposalrequest", show); };
}

/** "time on task m:ss", every second; returns the cleanup. */
function showActiveTime(el, timer) {
  const show = () => { el.textContent = clock(timer.ms); };
  show();
  const interval = setInterval(show, 1000);
  return () => clearInterval(interval);
}

/**
 * Every stroke kept: 500 ms after the canvas's last change the mask (PNG) goes to the save
 * queue's localStorage copy, which the queue sends; closing the tab inside those 500 ms keeps it
 * synchronously. The save status line says where the changes are (saving, saved, offline,
 * signed out, refused).
 */
class StrokeKeeper {
  constructor({ mc, queue, imageId, width, height, timer, activeMs, knownRevision, statusEl, showError }) {
    Object.assign(this, { mc, queue, imageId, width, height, timer, knownRevision, statusEl, showError });
    this.unstashed = 0; // changes not yet in localStorage
    this.stashTimer = null;
    this.stashing = null; // the stash in progress (PNG encoding is asynchronous)
    this.lastStashedActive = activeMs; // the time on task the stored copy holds
    this._update = () => this.updateStatus();
    this._changed = () => this.changed();
    this._pageHide = () => this.keepNow();
    mc.addEventListener("change", this._changed);
    queue.addEventListener("state", this._update);
    window.addEventListener("online", this._update);
    window.addEventListener("offline", this._update);
    window.addEventListener("pagehide", this._pageHide);
    this.updateStatus();
  }

  /** Nothing waits to be stashed. */
  get idle() { return !this.unstashed && !this.stashTimer; }

  changed() {
    this.unstashed++;
    clearTimeout(this.stashTimer);
    this.stashTimer = setTimeout(() => this.stashNow(), STASH_DEBOUNCE_MS);
    this.updateStatus();
  }

  stashNow() {
    clearTimeout(this.stashTimer);
    this.stashTimer = null;
    const changes = this.unstashed;
    this.unstashed = 0;
    const activeMs = this.timer.ms;
    const pngPromise = this.mc.toPngBlob(); // snapshot taken synchronously
    const provenance = this.mc.provenance(); // what drew it, counted at the same moment
    const proposalSource = this.mc.proposalSource;
    const { imageId, width, height, knownRevision } = this;
    this.stashing = (this.stashing || Promise.resolve())
      .then(() => pngPromise)
      .then(blobToDataUrl)
      .then((dataUrl) => {
        this.queue.stash(imageId, { dataUrl, width, height, activeMs, changes, knownRevision, provenance, proposalSource });
        this.lastStashedActive = activeMs;
      })
      .catch((err) => { this.unstashed += changes; this.showError(`Could not keep the drawing: ${err.message}`); })
      .finally(() => { this.updateStatus(); });
    this.updateStatus();
    return this.stashing;
  }

  /** Before submit: the final drawing (and the final time on task) stashed. */
  async settle(serverHasMask) {
    const rec = this.queue.read(this.imageId);
    const neverSaved = !serverHasMask && !(rec && rec.lastSaveId) && !(rec && !rec.synced);
    if (!this.idle || neverSaved || this.timer.ms - this.lastStashedActive > 5000) await this.stashNow();
    await this.stashing;
  }

  /** The image was skipped: nothing of it is kept. */
  discard() {
    clearTimeout(this.stashTimer);
    this.stashTimer = null;
    this.unstashed = 0;
    this.queue.remove(this.imageId);
  }

  /** Closing or reloading the tab inside the debounce window: keep the stroke synchronously. */
  keepNow() {
    if (this.idle) return;
    clearTimeout(this.stashTimer);
    this.stashTimer = null;
    const dataUrl = this.mc.toDataUrlSync();
    const { imageId, width, height, knownRevision } = this;
    this.queue.stash(imageId, { dataUrl, width, height, activeMs: this.timer.ms, changes: this.unstashed, knownRevision,
      provenance: this.mc.provenance(), proposalSource: this.mc.proposalSource });
    this.unstashed = 0;
  }

  updateStatus() {
    const queue = this.queue;
    const n = queue.pendingChanges(this.imageId) + this.unstashed;
    const offline = queue.state === "offline" || !navigator.onLine;
    let state, text;
    if (queue.state === "auth" && n) { state = "auth"; text = `signed out: ${plural(n, "change")} kept`; }
    else if (offline && n) { state = "offline"; text = `offline: ${plural(n, "change")} kept`; }
    else if (queue.state === "error" && !queue.isSynced(this.imageId)) {
      state = "error"; text = `not saved: ${queue.error || "the server refused the mask"} (kept in this browser)`;
    } else if (n || this.stashTimer) { state = "saving"; text = "saving…"; }
    else { state = "saved"; text = "saved"; }
    this.statusEl.dataset.state = state;
    this.statusEl.dataset.pending = String(n);
    this.statusEl.textContent = text;
    if (queue.storageError) this.showError(queue.storageError);
  }

  /** Leaving the page: keep what is not stashed yet, then stop listening. */
  leave() {
    if (!this.idle) this.stashNow();
    else if (this.timer.ms > this.lastStashedActive) this.queue.updateActiveMs(this.imageId, this.timer.ms);
    this.mc.removeEventListener("change", this._changed);
    this.queue.removeEventListener("state", this._update);
    window.removeEventListener("online", this._update);
    window.removeEventListener("offline", this._update);
    window.removeEventListener("pagehide", this._pageHide);
  }
}

/** The sentence asking to confirm an empty or tiny mask, or "" for an ordinary one. */
function smallMaskWarning(mc, width, height) {
  const n = mc.raster.count();
  if (n === 0) return "The mask is empty: nothing is marked as salient. Submit it anyway (nothing in this image is salient)?";
  if (n < TINY_FRACTION * width * height) {
    return `The mask is tiny: ${n} pixel${n === 1 ? "" : "s"}, under 0.5 % of the image. Submit it anyway?`;
  }
  return "";
}

/** Submit (button, Ctrl+Enter; an empty or tiny mask asks first): the queue flushed, the
 * latest revision marked submitted, then the next image. Returns the cleanup. */
function bindSubmit(root, { mc, keeper, queue, data, imageId, width, height, datasetId, navigate, showError }) {
  const submitBtn = root.querySelector("button.submit");
  const warnBox = root.querySelector(".small-mask-warning");
  const focusCanvas = () => mc.container.focus({ preventScroll: true });
  let busy = false;
  async function submit(confirmed = false) {
    if (busy) return;
    mc.settle(); // a live wand region is kept, a lasso in progress dropped
    const warning = confirmed ? "" : smallMaskWarning(mc, width, height);
    if (warning) {
      warnBox.querySelector(".warning-text").textContent = warning;
      warnBox.hidden = false;
      warnBox.querySelector(".confirm-submit").focus();
      return;
    }
    warnBox.hidden = true;
    busy = true;
    submitBtn.disabled = true;
    showError("");
    try {
      mc.settle();
      // Make sure the server holds the final drawing (and the final active time). A claimed
      // image has an annotation at revision 0 (no mask yet): submit needs one save.
      await keeper.settle(data.annotation && data.annotation.revision > 0);
      if (!queue.isSynced(imageId)) submitBtn.textContent = "Waiting for the save…";
      const saved = await queue.flush(imageId);
      const submitBody = saved && saved.lastSaveId ? { save_id_of_last_save: saved.lastSaveId } : {};
      if (confirmed) submitBody.confirm_empty = true;
      await api(`/api/annotate/images/${imageId}/submit`, { method: "POST", body: submitBody });
      queue.remove(imageId);
      submitBtn.textContent = "Submitted";
      if (!(await openNext(datasetId, navigate))) {
        render(root, html`<section class="page"><h1>All done</h1>
          <p>There are no more images in this queue. Thank you!</p>
          <p><a class="button" href="#/annotate">Back to the queue</a></p></section>`);
      }
    } catch (err) {
      showError(err.message);
      submitBtn.textContent = "Submit";
      submitBtn.disabled = false;
    } finally {
      busy = false;
    }
  }
  submitBtn.addEventListener("click", () => submit());
  root.querySelector(".confirm-submit").addEventListener("click", () => submit(true));
  root.querySelector(".keep-drawing").addEventListener("click", () => { warnBox.hidden = true; focusCanvas(); });
  const onKey = (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); submit(); }
    else if (e.key === "Escape" && !warnBox.hidden) warnBox.hidden = true;
  };
  window.addEventListener("keydown", onKey);
  return () => window.removeEventListener("keydown", onKey);
}

/** Skip… with a reason (one of SKIP_REASONS or typed), then the next image. */
function bindSkip(root, { keeper, imageId, datasetId, navigate, showError }) {
  const skipForm = root.querySelector(".skip-form");
  root.querySelector(".skip-open").addEventListener("click", () => { skipForm.hidden = false; skipForm.reason.focus(); });
  root.querySelector(".skip-cancel").addEventListener("click", () => { skipForm.hidden = true; });
  skipForm.reason.addEventListener("change", () => { skipForm.other.hidden = skipForm.reason.value !== ""; });
  skipForm.addEventListener("submit", async (e) => {
    e.preventDefault();
    const reason = skipForm.reason.value || skipForm.other.value.trim();
    if (!reason) { showError("Say why you skip this image."); return; }
    showError("");
    try {
      await api(`/api/annotate/images/${imageId}/skip`, { method: "POST", body: { reason } });
      keeper.discard();
      if (!(await openNext(datasetId, navigate))) navigate("#/annotate");
    } catch (err) { showError(err.message); }
  });
}

export async function mount(root, { params, query, session, navigate }) {
  const imageId = Number(params[0]);
  const datasetId = query.get("dataset") || sessionStorage.getItem(LAST_DATASET_KEY) || "";
  const queue = session.saveQueue;
  const data = await api(`/api/annotate/images/${imageId}`);
  const img = await loadImage(data.image.file_url || `/api/images/${imageId}/file`);
  const width = data.image.width || img.naturalWidth;
  const height = data.image.height || img.naturalHeight;
  render(root, pageMarkup(data, width, height));

  const errEl = root.querySelector(".form-error");
  const showError = (msg) => { errEl.textContent = msg || ""; errEl.hidden = !msg; };
  const userId = session.user ? session.user.id : null;
  const prefs = loadPrefs(userId);
  const picked = datasetSizes(prefs, data.image.dataset_id);
  const mc = new MaskCanvas(root.querySelector(".canvas-host"), {
    image: img, width, height, keys: loadKeys(),
    brushSize: Number(picked.brush) || undefined, // undefined: sized to the image
    eraserSize: Number(picked.eraser) || undefined,
  });
  if (Number(prefs.zoom) > 0) mc.zoomRelative(Number(prefs.zoom));
  const forgetPrefs = rememberPrefs(mc, userId, data.image.dataset_id);
  bindTools(root, mc, prefs, userId);

  const start = await restoreMask(root, mc, queue, data, { imageId, width, height });
  const timer = new ActiveTimer(start.activeMs);
  timer.start();
  const stopClock = showActiveTime(root.querySelector(".active-time"), timer);
  const keeper = new StrokeKeeper({ mc, queue, imageId, width, height, timer, ...start,
    statusEl: root.querySelector(".save-status"), showError });
  const page = { mc, keeper, queue, data, imageId, width, height, datasetId, navigate, showError };
  const unbindAids = bindAids(root, mc, page);
  const unbindSubmit = bindSubmit(root, page);
  bindSkip(root, page);
  mc.container.focus({ preventScroll: true });

  return () => {
    keeper.leave();
    timer.stop();
    stopClock();
    forgetPrefs();
    unbindAids();
    mc.destroy();
    unbindSubmit();
  };
}
