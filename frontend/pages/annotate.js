// Annotation page (#/annotate/{imageId}?dataset={id}): draw the salient region of one image.
// Every stroke is kept: debounced 500 ms after a stroke the mask goes to localStorage and the
// save queue PUTs it with retries; a reload restores a local copy newer than the server's.
// Submit flushes the queue then marks the latest revision submitted and opens the next image.
// Usage: routed by app.js; exports mount(root, ctx).

import { api } from "../lib/api.js";
import { html, render } from "../lib/html.js";
import { ActiveTimer } from "../lib/active-time.js";
import { clock, wholePercent } from "../lib/format.js";
import { DEFAULT_KEYS, MaskCanvas, hotkeyList, keyName } from "../components/mask-canvas/mask-canvas.js";
import { LAST_DATASET_KEY, openNext } from "../lib/next-image.js";

const STASH_DEBOUNCE_MS = 500;
const KEYS_STORAGE = "salience-hotkeys:v1";

/** The annotator's remapped hotkeys (one key per row of DEFAULT_KEYS), or null for defaults. */
function loadKeys() {
  try {
    const k = JSON.parse(localStorage.getItem(KEYS_STORAGE));
    return Array.isArray(k) && k.length === DEFAULT_KEYS.length ? k : null;
  } catch {
    return null;
  }
}
const SKIP_REASONS = [
  "No clear object of the class in the image",
  "Image is corrupt or unreadable",
  "Unsure what is salient",
  "Inappropriate content",
];

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

const COLORS = { pink: [255, 40, 90], cyan: [0, 220, 255], green: [40, 230, 60], yellow: [255, 230, 0], blue: [40, 80, 255] };
const COLOR_STORAGE = "salience-mask-color"; // before preferences were kept per annotator
// Under this share of the image a mask is "tiny" (as the server's TINY_FRACTION): submit asks.
const TINY_FRACTION = 0.005;

/** The annotator's drawing preferences (brush and eraser size, colour, zoom relative to the
 * fitted view), kept in this browser per user id so a shared machine keeps each one's. */
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

const TOOL_BUTTONS = [
  ["brush", "Brush", "B"],
  ["eraser", "Eraser", "E"],
  ["lasso", "Lasso", "L"],
];

export async function mount(root, { params, query, session, navigate }) {
  const imageId = Number(params[0]);
  const datasetId = query.get("dataset") || sessionStorage.getItem(LAST_DATASET_KEY) || "";
  const queue = session.saveQueue;
  const data = await api(`/api/annotate/images/${imageId}`);
  const { image } = data;
  const img = await loadImage(image.file_url || `/api/images/${imageId}/file`);
  const width = image.width || img.naturalWidth;
  const height = image.height || img.naturalHeight;

  render(root, html`
    <section class="annotate">
      <aside class="tools" aria-label="Tools">
        <div class="tool-group">
          ${TOOL_BUTTONS.map(([t, label, key]) => html`<button type="button" data-tool="${t}"
            title="${label} (${key})">${label} <kbd>${key}</kbd></button>`)}
        </div>
        <label class="size brush-size">Brush size <span class="val"></span>
          <input type="range" min="1" max="300" data-size="brush"></label>
        <label class="size eraser-size">Eraser size <span class="val"></span>
          <input type="range" min="1" max="300" data-size="eraser"></label>
        <label class="inline lasso-mode" title="Hold Alt while closing to cut once (X toggles)">
          <input type="checkbox" name="cut"> Lasso cuts <kbd>X</kbd></label>
        <label class="opacity">Mask opacity <span class="val"></span>
          <input type="range" min="0" max="100" name="opacity"></label>
        <label>Mask colour <select name="color">
          ${Object.keys(COLORS).map((c) => html`<option>${c}</option>`)}</select></label>
        <div class="tool-group">
          <button type="button" data-action="undo" title="Undo (Ctrl+Z)">Undo</button>
          <button type="button" data-action="redo" title="Redo (Ctrl+Shift+Z)">Redo</button>
          <button type="button" data-action="clear" title="Clear (Delete)">Clear</button>
        </div>
        <div class="tool-group zoom">
          <button type="button" data-action="zoomOut" title="Zoom out (-)">−</button>
          <span class="zoom-val"></span>
          <button type="button" data-action="zoomIn" title="Zoom in (+)">+</button>
          <button type="button" data-action="fit" title="Fit (0)">Fit</button>
          <button type="button" data-action="actual" title="Actual pixels (1)">1:1</button>
        </div>
      </aside>
      <div class="canvas-host" aria-label="Image ${image.id}, draw the salient region"></div>
      <aside class="side">
        <div class="save-status" data-state="saved" role="status" aria-live="polite">saved</div>
        <p class="note muted" hidden></p>
        <div>
          <div class="muted small">${image.dataset_name}${data.remaining !== undefined ? ` · ${data.remaining} left` : ""}</div>
          <h2 class="class-name">${image.class_name}</h2>
          <div class="muted small">${width} × ${height} px${data.annotation && data.annotation.revision
            ? ` · revision ${data.annotation.revision} (${data.annotation.status})` : ""}
            · time on task <span class="active-time">0:00</span></div>
        </div>
        ${data.annotation && data.annotation.status === "rejected" ? html`<div class="review-note">
          <strong>Returned by the reviewer.</strong> ${data.annotation.review_comment || "Please redo this mask."}</div>` : ""}
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
        <p class="form-error" role="alert" hidden></p>
        <details class="hotkeys" open>
          <summary>Hotkeys <span class="muted small">(click a key to change it)</span></summary>
          <table></table>
          <button type="button" class="link keys-reset">Restore default keys</button>
        </details>
      </aside>
    </section>`);

  const host = root.querySelector(".canvas-host");
  const statusEl = root.querySelector(".save-status");
  const noteEl = root.querySelector(".note");
  const errEl = root.querySelector(".form-error");
  const userId = session.user ? session.user.id : null;
  const prefs = loadPrefs(userId);
  const mc = new MaskCanvas(host, {
    image: img, width, height, keys: loadKeys(),
    brushSize: Number(prefs.brush) || undefined,
    eraserSize: Number(prefs.eraser) || undefined,
  });
  if (Number(prefs.zoom) > 0) mc.zoomRelative(Number(prefs.zoom));
  let prefsTimer = null;
  function rememberPrefs() {
    clearTimeout(prefsTimer);
    prefsTimer = setTimeout(() => {
      const sizes = mc.sizes;
      savePrefs(userId, {
        ...loadPrefs(userId),
        brush: sizes.brush,
        eraser: sizes.eraser,
        zoom: Math.round(mc.zoomRelativeToFit * 1000) / 1000,
      });
    }, 200);
  }
  mc.addEventListener("toolchange", rememberPrefs);
  mc.addEventListener("viewchange", rememberPrefs);

  // ---- hotkeys: listed on the page, remappable, kept in this browser ----
  const keysTable = root.querySelector(".hotkeys table");
  function renderKeys(waitingRow = -1) {
    render(keysTable, html`${hotkeyList(mc.keys).map(([k, label], i) => html`<tr>
        <td><button type="button" class="key" data-row="${i}" title="Change the key for: ${label}">
          <kbd>${i === waitingRow ? "press a key…" : k || "none"}</kbd></button></td><td>${label}</td></tr>`)}
      <tr><td><kbd>ctrl+enter</kbd></td><td>Submit</td></tr>`);
  }
  renderKeys();
  let rebindListener = null;
  keysTable.addEventListener("click", (e) => {
    const b = e.target.closest("button.key");
    if (!b) return;
    const row = Number(b.dataset.row);
    renderKeys(row);
    if (rebindListener) window.removeEventListener("keydown", rebindListener, true);
    rebindListener = (ev) => {
      if (["Control", "Shift", "Alt", "Meta"].includes(ev.key)) return;
      ev.preventDefault();
      ev.stopImmediatePropagation();
      window.removeEventListener("keydown", rebindListener, true);
      rebindListener = null;
      const k = keyName(ev);
      if (k !== "escape") {
        const keys = mc.keys.slice();
        const other = keys.indexOf(k);
        if (other >= 0 && other !== row) keys[other] = ""; // a key does one thing
        keys[row] = k;
        mc.setKeys(keys);
        localStorage.setItem(KEYS_STORAGE, JSON.stringify(keys));
        syncTools();
      }
      renderKeys();
    };
    window.addEventListener("keydown", rebindListener, true);
  });
  root.querySelector(".keys-reset").addEventListener("click", () => {
    localStorage.removeItem(KEYS_STORAGE);
    mc.setKeys(DEFAULT_KEYS.map(([k]) => k));
    renderKeys();
    syncTools();
  });

  // ---- choose the starting mask: a local copy newer than the server's, else the server's ----
  const serverRev = data.annotation ? data.annotation.revision : 0;
  let local = queue.read(imageId);
  if (local && (local.width !== width || local.height !== height)) local = null;
  const useLocal = local && !local.synced && serverRev <= (local.knownRevision || 0);
  let activeStart = data.annotation ? data.annotation.active_ms || 0 : 0;
  if (useLocal) {
    mc.loadMask(await loadImage(local.dataUrl));
    activeStart = Math.max(activeStart, local.activeMs || 0);
    noteEl.textContent = "Restored your latest drawing, kept in this browser.";
    noteEl.hidden = false;
    queue.kick();
  } else {
    if (data.annotation && data.annotation.mask_png_base64) {
      mc.loadMask(await loadImage(`data:image/png;base64,${data.annotation.mask_png_base64}`));
    }
    if (local && serverRev > (local.knownRevision || 0)) queue.remove(imageId); // server is newer
    queue.noteServerRevision(imageId, serverRev);
  }
  const knownRevision = Math.max(serverRev, useLocal ? local.knownRevision || 0 : 0);
  const timer = new ActiveTimer(activeStart);
  timer.start();
  const activeEl = root.querySelector(".active-time");
  const showActive = () => { activeEl.textContent = clock(timer.ms); };
  showActive();
  const activeInterval = setInterval(showActive, 1000);

  // ---- local stash after each stroke (debounced), then the queue sends it ----
  let unstashed = 0;
  let stashTimer = null;
  let stashing = null;
  let lastStashedActive = activeStart;

  function stashNow() {
    clearTimeout(stashTimer);
    stashTimer = null;
    const changes = unstashed;
    unstashed = 0;
    const activeMs = timer.ms;
    const pngPromise = mc.toPngBlob(); // snapshot taken synchronously
    const prev = stashing || Promise.resolve();
    stashing = prev
      .then(() => pngPromise)
      .then(blobToDataUrl)
      .then((dataUrl) => {
        queue.stash(imageId, { dataUrl, width, height, activeMs, changes, knownRevision });
        lastStashedActive = activeMs;
      })
      .catch((err) => { unstashed += changes; showError(`Could not keep the drawing: ${err.message}`); })
      .finally(() => { updateStatus(); });
    updateStatus();
    return stashing;
  }

  function onChange() {
    unstashed++;
    clearTimeout(stashTimer);
    stashTimer = setTimeout(stashNow, STASH_DEBOUNCE_MS);
    updateStatus();
    syncTools();
  }
  mc.addEventListener("change", onChange);

  function updateStatus() {
    const n = queue.pendingChanges(imageId) + unstashed;
    const offline = queue.state === "offline" || !navigator.onLine;
    let state, text;
    if (queue.state === "auth" && n) { state = "auth"; text = `signed out: ${n} changes kept`; }
    else if (offline && n) { state = "offline"; text = `offline: ${n} changes kept`; }
    else if (queue.state === "error" && !queue.isSynced(imageId)) {
      state = "error"; text = `not saved: ${queue.error || "the server refused the mask"} (kept in this browser)`;
    } else if (n || stashTimer) { state = "saving"; text = "saving…"; }
    else { state = "saved"; text = "saved"; }
    statusEl.dataset.state = state;
    statusEl.dataset.pending = String(n);
    statusEl.textContent = text;
    if (queue.storageError) showError(queue.storageError);
  }
  const onQueueState = () => updateStatus();
  queue.addEventListener("state", onQueueState);
  const onNet = () => updateStatus();
  window.addEventListener("online", onNet);
  window.addEventListener("offline", onNet);

  function showError(msg) {
    errEl.textContent = msg || "";
    errEl.hidden = !msg;
  }

  // ---- toolbar ----
  const colorSel = root.querySelector("select[name=color]");
  const savedColor = prefs.color || localStorage.getItem(COLOR_STORAGE);
  if (savedColor && COLORS[savedColor]) { colorSel.value = savedColor; mc.setColor(COLORS[savedColor]); }
  colorSel.addEventListener("change", () => {
    mc.setColor(COLORS[colorSel.value]);
    savePrefs(userId, { ...loadPrefs(userId), color: colorSel.value });
    host.focus({ preventScroll: true });
  });
  const opacityInput = root.querySelector("input[name=opacity]");
  opacityInput.value = String(wholePercent(mc.opacity));
  function syncTools() {
    for (const b of root.querySelectorAll("button[data-tool]")) {
      b.setAttribute("aria-pressed", String(b.dataset.tool === mc.tool));
      const row = DEFAULT_KEYS.findIndex(([, action]) => action === b.dataset.tool);
      b.querySelector("kbd").textContent = (mc.keys[row] || "").toUpperCase();
    }
    for (const input of root.querySelectorAll("input[data-size]")) {
      input.value = String(mc.sizes[input.dataset.size]);
      input.closest("label").querySelector(".val").textContent = `${mc.sizes[input.dataset.size]} px`;
    }
    root.querySelector(".brush-size").classList.toggle("current", mc.tool === "brush");
    root.querySelector(".eraser-size").classList.toggle("current", mc.tool === "eraser");
    root.querySelector("input[name=cut]").checked = mc.lasso.mode === "subtract";
    root.querySelector(".opacity .val").textContent = `${wholePercent(mc.opacity)}%`;
    root.querySelector("[data-action=undo]").disabled = !mc.canUndo;
    root.querySelector("[data-action=redo]").disabled = !mc.canRedo;
    root.querySelector(".zoom-val").textContent = `${wholePercent(mc.view.scale)}%`;
  }
  mc.addEventListener("toolchange", syncTools);
  mc.addEventListener("viewchange", syncTools);
  root.querySelector(".tools").addEventListener("click", (e) => {
    const b = e.target.closest("button");
    if (!b) return;
    if (b.dataset.tool) mc.setTool(b.dataset.tool);
    if (b.dataset.action) mc.action(b.dataset.action);
    syncTools();
    host.focus({ preventScroll: true });
  });
  root.querySelector(".tools").addEventListener("input", (e) => {
    const t = e.target;
    if (t.dataset.size) mc.setSize(Number(t.value), t.dataset.size);
    if (t.name === "opacity") mc.setOpacity(Number(t.value) / 100);
    if (t.name === "cut") mc.setLassoMode(t.checked ? "subtract" : "add");
    syncTools();
  });
  syncTools();
  updateStatus();

  // ---- submit and skip ----
  const submitBtn = root.querySelector("button.submit");
  const warnBox = root.querySelector(".small-mask-warning");
  let busy = false;
  /** The sentence asking to confirm an empty or tiny mask, or "" for an ordinary one. */
  function smallMaskWarning() {
    const n = mc.raster.count();
    if (n === 0) return "The mask is empty: nothing is marked as salient. Submit it anyway (nothing in this image is salient)?";
    if (n < TINY_FRACTION * width * height) {
      return `The mask is tiny: ${n} pixel${n === 1 ? "" : "s"}, under 0.5 % of the image. Submit it anyway?`;
    }
    return "";
  }
  root.querySelector(".keep-drawing").addEventListener("click", () => { warnBox.hidden = true; host.focus({ preventScroll: true }); });
  root.querySelector(".confirm-submit").addEventListener("click", () => submit(true));
  async function submit(confirmed = false) {
    if (busy) return;
    mc.cancel();
    const warning = confirmed ? "" : smallMaskWarning();
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
      mc.cancel();
      // Make sure the server holds the final drawing (and the final active time).
      const rec = queue.read(imageId);
      // A claimed image has an annotation at revision 0 (no mask yet): submit needs one save.
      const serverHasMask = data.annotation && data.annotation.revision > 0;
      const neverSaved = !serverHasMask && !(rec && rec.lastSaveId) && !(rec && !rec.synced);
      if (unstashed || stashTimer || neverSaved || timer.ms - lastStashedActive > 5000) {
        await stashNow();
      }
      await stashing;
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
      clearTimeout(stashTimer);
      stashTimer = null;
      unstashed = 0;
      queue.remove(imageId);
      if (!(await openNext(datasetId, navigate))) navigate("#/annotate");
    } catch (err) { showError(err.message); }
  });

  // Closing or reloading the tab inside the debounce window: keep the stroke synchronously.
  const onPageHide = () => {
    if (!unstashed && !stashTimer) return;
    clearTimeout(stashTimer);
    stashTimer = null;
    const dataUrl = mc.toDataUrlSync();
    queue.stash(imageId, { dataUrl, width, height, activeMs: timer.ms, changes: unstashed, knownRevision });
    unstashed = 0;
  };
  window.addEventListener("pagehide", onPageHide);

  const onKey = (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "Enter") { e.preventDefault(); submit(); }
    else if (e.key === "Escape" && !warnBox.hidden) warnBox.hidden = true;
  };
  window.addEventListener("keydown", onKey);
  host.focus({ preventScroll: true });

  return () => {
    // Leaving the page: keep what is not stashed yet, then stop listening.
    if (unstashed || stashTimer) stashNow();
    else if (timer.ms > lastStashedActive) queue.updateActiveMs(imageId, timer.ms);
    timer.stop();
    clearInterval(activeInterval);
    clearTimeout(prefsTimer);
    mc.destroy();
    queue.removeEventListener("state", onQueueState);
    window.removeEventListener("online", onNet);
    window.removeEventListener("offline", onNet);
    window.removeEventListener("keydown", onKey);
    window.removeEventListener("pagehide", onPageHide);
    if (rebindListener) window.removeEventListener("keydown", rebindListener, true);
  };
}

