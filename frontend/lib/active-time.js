// Time on task as the tool measures it: counts only while the tab is visible and the user
// has interacted (pointer, key, wheel) within the last IDLE_MS.
// Usage: const t = new ActiveTimer(startMs); t.start(); ... t.ms; t.stop();

const IDLE_MS = 30000;
const TICK_MS = 250;

export class ActiveTimer {
  constructor(initialMs = 0, { idleMs = IDLE_MS } = {}) {
    this.total = initialMs;
    this.idleMs = idleMs;
    this.lastInput = performance.now();
    this.lastTick = performance.now();
    this.interval = null;
    this._onInput = () => { this._tick(); this.lastInput = performance.now(); };
  }

  start() {
    for (const t of ["pointerdown", "pointermove", "keydown", "wheel"]) {
      window.addEventListener(t, this._onInput, { passive: true, capture: true });
    }
    this.lastInput = this.lastTick = performance.now();
    this.interval = setInterval(() => this._tick(), TICK_MS);
  }

  _tick() {
    const now = performance.now();
    const visible = document.visibilityState === "visible";
    // Credit the time since the last tick, but never past the idle cut-off.
    const activeUntil = Math.min(now, this.lastInput + this.idleMs);
    if (visible && activeUntil > this.lastTick) this.total += activeUntil - this.lastTick;
    this.lastTick = now;
  }

  get ms() { this._tick(); return Math.round(this.total); }

  stop() {
    this._tick();
    clearInterval(this.interval);
    for (const t of ["pointerdown", "pointermove", "keydown", "wheel"]) {
      window.removeEventListener(t, this._onInput, { capture: true });
    }
  }
}
