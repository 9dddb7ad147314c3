// Never lose a stroke: each image's latest mask is written to localStorage first, then PUT to the
// server by a queue that retries (exponential backoff, on `online`, on tab visible) and survives
// an expired login (it waits for the re-login dialog, then resumes). A save_id is made once per
// snapshot, so a retried PUT is idempotent on the server.
// Usage:
//   const q = new SaveQueue({ userId });
//   q.addEventListener("state", render);               // q.state: saved | saving | offline | auth | error
//   q.stash(imageId, { dataUrl, width, height, activeMs, changes: 1, knownRevision,
//                      provenance, proposalSource });   // the last two: what drew the mask
//   await q.flush(imageId);                            // resolves once the server has it
//   q.pendingChanges(imageId)                          // strokes not yet on the server

import { api, ApiError, requestReauth } from "./api.js";

const PREFIX = "salience-mask:v1:";
const MAX_DELAY_MS = 30000;
const KEEP_SYNCED_MS = 7 * 24 * 3600 * 1000;

export function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

export class SaveQueue extends EventTarget {
  constructor({ userId, storage = window.localStorage }) {
    super();
    this.userId = userId;
    this.storage = storage;
    this.records = new Map(); // imageId -> record (memory copy; localStorage may be full)
    this.state = "saved";
    this.error = null; // sentence of the last refused save
    this.storageError = null;
    this.failures = 0;
    this.timer = null;
    this.running = false;
    this.inFlight = null; // imageId being sent
    this._onOnline = () => { this.failures = 0; this.kick(); };
    this._onVisible = () => { if (document.visibilityState === "visible") this.kick(); };
    window.addEventListener("online", this._onOnline);
    document.addEventListener("visibilitychange", this._onVisible);
  }

  key(imageId) { return `${PREFIX}${this.userId}:${imageId}`; }

  /** The stored record for an image (memory first, then localStorage), or null. */
  read(imageId) {
    if (this.records.has(imageId)) return this.records.get(imageId);
    try {
      const raw = this.storage.getItem(this.key(imageId));
      if (!raw) return null;
      const rec = JSON.parse(raw);
      this.records.set(imageId, rec);
      return rec;
    } catch {
      return null;
    }
  }

  _write(rec) {
    this.records.set(rec.imageId, rec);
    try {
      this.storage.setItem(this.key(rec.imageId), JSON.stringify(rec));
      this.storageError = null;
    } catch (err) {
      // Quota full: keep it in memory and say so; the server copy is still on its way.
      this.storageError = "The browser's storage is full: unsaved strokes are only kept in this tab.";
      this._pruneSynced(0);
    }
  }

  /** Keep a new snapshot of the mask and queue it for the server. */
  stash(imageId, { dataUrl, width, height, activeMs, changes = 1, knownRevision = 0, provenance = null, proposalSource = null }) {
    const prev = this.read(imageId);
    const rec = {
      imageId,
      userId: this.userId,
      dataUrl,
      width,
      height,
      activeMs,
      provenance,
      proposalSource,
      saveId: uuid4(),
      changes: (prev ? prev.changes : 0) + changes,
      syncedChanges: prev ? prev.syncedChanges : 0,
      knownRevision: Math.max(knownRevision, prev ? prev.knownRevision || 0 : 0),
      lastSaveId: prev ? prev.lastSaveId : null,
      synced: false,
      updatedAt: Date.now(),
    };
    this._write(rec);
    if (this.state === "error") this.error = null;
    this._setState();
    this.kick();
    return rec;
  }

  /** Update only the active time (e.g. before submit) without counting a change. */
  updateActiveMs(imageId, activeMs) {
    const rec = this.read(imageId);
    if (rec) { rec.activeMs = activeMs; this._write(rec); }
  }

  /** Record what the server holds (after loading an image) so a reload can compare. */
  noteServerRevision(imageId, revision) {
    const rec = this.read(imageId);
    if (rec && rec.synced && revision >= (rec.knownRevision || 0)) {
      rec.knownRevision = revision;
      this._write(rec);
    }
  }

  remove(imageId) {
    this.records.delete(imageId);
    try { this.storage.removeItem(this.key(imageId)); } catch { /* ignore */ }
    this._setState();
  }

  pendingChanges(imageId) {
    let n = 0;
    for (const rec of this._pending()) {
      if (imageId === undefined || rec.imageId === imageId) n += rec.changes - rec.syncedChanges;
    }
    return n;
  }

  isSynced(imageId) {
    const rec = this.read(imageId);
    return !rec || rec.synced;
  }

  /** Find unsynced records left by an earlier visit (closed tab, crash) and send them. */
  recover() {
    const mine = `${PREFIX}${this.userId}:`;
    try {
      for (let i = 0; i < this.storage.length; i++) {
        const k = this.storage.key(i);
        if (!k || !k.startsWith(mine)) continue;
        const imageId = Number(k.slice(mine.length));
        this.read(imageId);
      }
    } catch { /* storage unavailable */ }
    this._pruneSynced(KEEP_SYNCED_MS);
    this._setState();
    this.kick();
  }

  _pruneSynced(olderThanMs) {
    const now = Date.now();
    for (const rec of [...this.records.values()]) {
      if (rec.synced && now - rec.updatedAt >= olderThanMs) {
        this.records.delete(rec.imageId);
        try { this.storage.removeItem(this.key(rec.imageId)); } catch { /* ignore */ }
      }
    }
  }

  _pending() { return [...this.records.values()].filter((r) => !r.synced && !r.refused); }

  _setState(state) {
    const pending = this._pending().length > 0;
    if (state) this.state = state;
    else if (this.state === "auth" || this.state === "offline") {
      if (!pending) this.state = "saved";
    } else if ([...this.records.values()].some((r) => r.refused && !r.synced)) this.state = "error";
    else this.state = pending ? "saving" : "saved";
    this.dispatchEvent(new CustomEvent("state", { detail: { state: this.state } }));
  }

  /** Send now (cancels a backoff wait). */
  kick() {
    if (this.timer) { clearTimeout(this.timer); this.timer = null; }
    this._pump();
  }

  async _pump() {
    if (this.running) return;
    this.running = true;
    try {
      for (;;) {
        const rec = this._pending().sort((a, b) => a.updatedAt - b.updatedAt)[0];
        if (!rec) break;
        const sent = { saveId: rec.saveId, changes: rec.changes };
        this.inFlight = rec.imageId;
        if (this.state !== "offline" && this.state !== "auth") this._setState("saving");
        let res;
        try {
          res = await api(`/api/annotate/images/${rec.imageId}/mask`, {
            method: "PUT",
            reauth: false,
            body: {
              save_id: rec.saveId,
              mask_png_base64: rec.dataUrl.slice(rec.dataUrl.indexOf(",") + 1),
              width: rec.width,
              height: rec.height,
              active_ms: Math.round(rec.activeMs || 0),
              // a record kept before provenance was recorded sends none (stored as unknown)
              ...(rec.provenance ? { provenance: rec.provenance } : {}),
              ...(rec.proposalSource ? { proposal_source: rec.proposalSource } : {}),
            },
          });
        } catch (err) {
          this.inFlight = null;
          if (!(err instanceof ApiError)) throw err;
          if (err.status === 401) {
            this._setState("auth");
            try { await requestReauth(); } catch { break; } // dialog closed: wait for a trigger
            this.failures = 0;
            this._setState("saving");
            continue;
          }
          if (err.isNetwork || err.status >= 500 || err.status === 408 || err.status === 429) {
            this.failures++;
            this._setState(err.isNetwork || !navigator.onLine ? "offline" : "offline");
            const delay = Math.min(MAX_DELAY_MS, 1000 * 2 ** (this.failures - 1));
            this.timer = setTimeout(() => { this.timer = null; this._pump(); }, delay * (0.8 + Math.random() * 0.4));
            break;
          }
          // The server refused this mask (400/413/422): keep it locally, do not loop on it.
          const cur = this.read(rec.imageId);
          if (cur && cur.saveId === sent.saveId) { cur.refused = err.message; this._write(cur); }
          this.error = err.message;
          this._setState("error");
          continue;
        }
        this.inFlight = null;
        this.failures = 0;
        const cur = this.read(rec.imageId);
        if (cur) {
          cur.syncedChanges = Math.max(cur.syncedChanges, sent.changes);
          cur.lastSaveId = sent.saveId;
          if (res && typeof res.revision === "number") cur.knownRevision = res.revision;
          if (cur.saveId === sent.saveId) cur.synced = true; // else a newer snapshot is waiting
          cur.savedAt = res && res.saved_at;
          this._write(cur);
        }
        this.state = "saving";
        this._setState();
      }
    } finally {
      this.running = false;
      this.inFlight = null;
    }
  }

  /** Resolve once the image's latest snapshot is on the server; reject if the server refused it. */
  flush(imageId) {
    return new Promise((resolve, reject) => {
      const check = () => {
        const rec = this.read(imageId);
        if (!rec || rec.synced) { this.removeEventListener("state", check); resolve(rec); return true; }
        if (rec.refused) { this.removeEventListener("state", check); reject(new ApiError(422, rec.refused)); return true; }
        return false;
      };
      if (check()) return;
      this.addEventListener("state", check);
      this.failures = 0;
      this.kick();
    });
  }

  destroy() {
    window.removeEventListener("online", this._onOnline);
    document.removeEventListener("visibilitychange", this._onVisible);
    if (this.timer) clearTimeout(this.timer);
  }
}
