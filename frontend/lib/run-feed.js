// Follow one training run as it trains: its whole detail first (GET /api/runs/<id>), then its
// server-sent events (GET /api/runs/<id>/events: summaries, per-batch points, epochs, log
// lines, the end) while it is queued or running; polling (lib/poll.js) takes over when the
// stream fails. Holds what the page draws (run, batches, epochs) and says what changed.
// Usage: import { RunFeed } from "../lib/run-feed.js";
//   const feed = new RunFeed(id, { onUpdate: (what) => draw(what), onMode: (m) => ..., onError, onRecover });
//   feed.follow();   // again after an action (cancel, retry); feed.stop() on leaving
// `what` is "detail" (everything was reloaded), "run" (the summary: state, progress, system),
// "log", "epoch" or "batch"; onMode gets "stream" or "poll".

import { api } from "./api.js";
import { start as poll } from "./poll.js";

const POLL_MS = 2000;

export class RunFeed {
  constructor(id, { onUpdate, onMode = () => {}, onError = () => {}, onRecover = () => {} }) {
    this.id = id;
    this.run = null;
    this.batches = [];
    this.epochs = [];
    this._on = { update: onUpdate, mode: onMode, error: onError, recover: onRecover };
    this._alive = true;
    this._stream = null;
    this._stopPolling = () => {};
  }

  /** Whether the run is still queued or running (its figures may change). */
  get active() {
    return Boolean(this.run) && (this.run.state === "queued" || this.run.state === "running");
  }

  /** Load now, then follow the run through its event stream; poll when the stream fails. */
  follow() {
    this._stopPolling();
    this._closeStream();
    this._load()
      .then((more) => { if (more && this._alive) this._openStream(); })
      .catch(() => { if (this._alive) this._poll(); });
  }

  stop() {
    this._alive = false;
    this._stopPolling();
    this._closeStream();
  }

  /** Fetch the whole run; true while it is queued or running. */
  async _load() {
    const detail = await api(`/api/runs/${this.id}`);
    if (!this._alive) return false;
    this.run = detail;
    this.batches = detail.batches || [];
    this.epochs = detail.epochs.map((e) => e.metrics);
    this._on.update("detail");
    return this.active;
  }

  _poll() {
    this._on.mode("poll");
    this._stopPolling();
    this._stopPolling = poll(() => this._load(), POLL_MS, {
      onError: (err) => { if (this._alive) this._on.error(err); },
      onRecover: () => { if (this._alive) this._on.recover(); },
    });
  }

  _closeStream() {
    if (this._stream) { this._stream.close(); this._stream = null; }
  }

  _openStream() {
    if (typeof EventSource === "undefined") { this._poll(); return; }
    const lastStep = this.batches.length ? this.batches[this.batches.length - 1].step : 0;
    const lastEpoch = this.epochs.length ? this.epochs[this.epochs.length - 1].epoch : 0;
    const es = new EventSource(`/api/runs/${this.id}/events?after_step=${lastStep}&after_epoch=${lastEpoch}`);
    this._stream = es;
    const current = () => this._alive && this._stream === es;
    const on = (name, fn) => es.addEventListener(name, (e) => { if (current()) fn(JSON.parse(e.data)); });
    es.addEventListener("open", () => { if (this._stream === es) this._on.mode("stream"); });
    on("run", (summary) => {
      const restarted = this.run && summary.attempts !== this.run.attempts;
      this.run = { ...this.run, ...summary };
      this._on.update("run");
      if (restarted) { this._closeStream(); this.follow(); } // a resumed run redoes its last epoch: reload
    });
    on("log", ({ log_tail: text }) => { this.run.log_tail = text; this._on.update("log"); });
    on("epoch", (rows) => {
      this.epochs = [...this.epochs.filter((e) => !rows.some((r) => r.epoch === e.epoch)), ...rows.map((r) => r.metrics)];
      this._on.update("epoch");
    });
    on("batch", (points) => {
      const first = points[0].step;
      this.batches = [...this.batches.filter((b) => b.step < first), ...points];
      this._on.update("batch");
    });
    on("reconnect", () => { this._closeStream(); this._openStream(); });
    on("end", () => { this._closeStream(); this._load(); }); // the final evaluation, downloads, salience
    es.onerror = () => {
      if (this._stream !== es) return;
      this._closeStream();
      if (this._alive) this._poll(); // the stream failed: the polling takes over
    };
  }
}
