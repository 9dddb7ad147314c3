// Timings of the drawing hot paths, kept on window.__maskCanvasStats for the browser test
// (tests/browser/test_pointer_timing.py reads and resets it). performance.now() in ms.
// Usage: import { stats, record } from "./stats.js"; record(stats.flush, ms);

const STATS_KEEP = 20000;

export const stats = (window.__maskCanvasStats = window.__maskCanvasStats || {
  pointer: [], // duration of each pointermove handler while drawing
  flush: [], // duration of each animation-frame upload of the changed pixels
  commit: [], // duration of finishing a stroke (history entry)
  reset() { this.pointer.length = 0; this.flush.length = 0; this.commit.length = 0; },
});

export function record(list, ms) {
  list.push(ms);
  if (list.length > STATS_KEEP) list.splice(0, list.length - STATS_KEEP);
}
