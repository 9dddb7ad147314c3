// Polling server state, the one way every page does it.
// Usage:
//   import { start as poll } from "../lib/poll.js";
//   const stop = poll(async () => {
//     const run = await api(`/api/runs/${id}`);
//     draw(run);
//     return run.state === "running";          // false ends the polling
//   }, 2000, { onError: (err) => showError(err.message) });
//   ...
//   stop();                                    // e.g. in the page's cleanup
// fn is called at once (after intervalMs with { immediate: false }), then intervalMs after the
// previous call has settled, so calls never overlap. fn returning false ends the polling
// (anything else, undefined included, goes on). A call that throws or rejects is handed to
// onError (console.error without one) and retried after 2, 4, 8... times intervalMs, at most
// maxMs; the first success after failures calls onRecover (e.g. to clear the error shown) and
// resets the delay. While the document is hidden no call is made; the due call is
// made as soon as it is visible again. After stop() nothing more is called (a call already in
// flight finishes, and what it returns is ignored).

export function start(fn, intervalMs, { immediate = true, maxMs = 60000, onError = null, onRecover = null } = {}) {
  let stopped = false;
  let timer = null;
  let due = false; // a call fell due while the document was hidden
  let failures = 0;

  async function tick() {
    timer = null;
    if (stopped) return;
    if (document.hidden) { due = true; return; }
    let more = true;
    let failed = false;
    try {
      more = (await fn()) !== false;
      if (failures > 0 && !stopped && onRecover) onRecover();
      failures = 0;
    } catch (err) {
      failed = true;
      failures++;
      if (!stopped) {
        if (onError) onError(err);
        else console.error(err);
      }
    }
    if (stopped) return;
    if (!more) { stop(); return; }
    timer = setTimeout(tick, failed ? Math.min(maxMs, intervalMs * 2 ** failures) : intervalMs);
  }

  function onVisibility() {
    if (document.hidden || !due || stopped) return;
    due = false;
    tick();
  }

  function stop() {
    stopped = true;
    clearTimeout(timer);
    timer = null;
    document.removeEventListener("visibilitychange", onVisibility);
  }

  document.addEventListener("visibilitychange", onVisibility);
  if (immediate) queueMicrotask(tick);
  else timer = setTimeout(tick, intervalMs);
  return stop;
}
