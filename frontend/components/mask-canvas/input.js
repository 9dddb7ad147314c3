// Pointer, wheel and keyboard wiring of a MaskCanvas, and its hotkeys. Turns DOM events into
// calls on the canvas (stroke start / move / end, hover, finishing a lasso, named actions) and
// on its view (pan with Space or the middle button, zoom with the wheel); owns no mask state.
// Usage: import { bindInput, DEFAULT_KEYS, keyName, hotkeyList } from "./input.js";
//   const unbind = bindInput(maskCanvas);  ...  unbind();

/** Default hotkeys: [key, action, description] rows; shown on the page by hotkeyList(). */
export const DEFAULT_KEYS = [
  ["b", "brush", "Brush"],
  ["e", "eraser", "Eraser"],
  ["l", "lasso", "Lasso / polygon (drag = freehand, click = vertices, Enter or double-click closes)"],
  ["x", "lassoMode", "Lasso: toggle fill / cut (or hold Alt while closing)"],
  ["[", "smaller", "Smaller brush / eraser"],
  ["]", "bigger", "Bigger brush / eraser"],
  ["ctrl+z", "undo", "Undo last stroke"],
  ["ctrl+shift+z", "redo", "Redo"],
  ["ctrl+y", "redo", "Redo"],
  ["delete", "clear", "Clear the mask (undoable)"],
  ["+", "zoomIn", "Zoom in (also mouse wheel)"],
  ["-", "zoomOut", "Zoom out"],
  ["0", "fit", "Fit to window"],
  ["1", "actual", "Actual pixels (100%)"],
  ["o", "toggleOverlay", "Show / hide the mask"],
  ["space", "pan", "Hold and drag to pan"],
  ["escape", "cancel", "Cancel the current lasso, the last wand region or a proposal"],
  // rows added later go at the end: a remapped list kept in a browser stays valid by row
  ["w", "wand", "Magic wand: a click fills the region of similar colour (Alt: cuts it); then the wheel widens or narrows it"],
  [",", "toleranceDown", "Wand: lower tolerance (narrows the last region)"],
  [".", "toleranceUp", "Wand: higher tolerance (widens the last region)"],
  ["s", "superpixels", "Superpixel brush: a stroke fills whole superpixels (Alt: clears them)"],
  ["q", "superpixelSize", "Superpixels: next size (small, medium, large)"],
  ["r", "refine", "Refine (GrabCut): drag a box around the object, or click to refine the mask"],
  ["a", "accept", "Accept the proposal (one undoable step)"],
  ["d", "discard", "Discard the proposal"],
  ["p", "proposal", "Show the dataset's proposal (where the dataset offers them)"],
];

/** Normalised name of a key press, e.g. "ctrl+shift+z", "[", "space". */
export function keyName(e) {
  let k = e.key === " " ? "space" : e.key.toLowerCase();
  if (k === "=") k = "+";
  if (k === "_") k = "-";
  if (k === "backspace") k = "delete";
  const mods = [];
  if (e.ctrlKey || e.metaKey) mods.push("ctrl");
  if (e.shiftKey && k.length > 1 || (e.shiftKey && (e.ctrlKey || e.metaKey))) mods.push("shift");
  return [...mods, k].join("+");
}

/** Hotkeys as [key, description] rows for display (keys: a remapped list, else the defaults). */
export function hotkeyList(keys) {
  return DEFAULT_KEYS.map(([key, , label], i) => [keys ? keys[i] : key, label]);
}

/**
 * Listen on mc.container and window for mc (a MaskCanvas); returns the function that removes
 * every listener. Uses mc.view, mc.keys, mc.action(name, e), and the canvas's stroke entry
 * points: strokeStart(p, e) -> whether the stroke goes on, strokeMove(points, e), strokeEnd(e),
 * hover(p), finishStroke(e) -> whether there was one to finish, cancel().
 */
export function bindInput(mc) {
  const el = mc.container;
  const view = mc.view;
  const listeners = [];
  const on = (target, type, fn, o) => {
    target.addEventListener(type, fn, o);
    listeners.push([target, type, fn, o]);
  };
  let rect = el.getBoundingClientRect();
  let spaceDown = false;
  let pan = null; // {x, y, tx, ty} while panning
  let drawingPointer = null; // pointerId of the stroke in progress
  const refreshRect = () => { rect = el.getBoundingClientRect(); };
  const toImage = (e) => view.toImage(e.clientX - rect.left, e.clientY - rect.top);
  const panReady = (ready) => { spaceDown = ready; el.classList.toggle("mc-pan-ready", ready); };

  on(window, "resize", refreshRect);
  on(window, "scroll", refreshRect, { passive: true, capture: true });

  on(el, "pointerdown", (e) => {
    el.focus({ preventScroll: true });
    refreshRect();
    if (e.button === 1 || (e.button === 0 && spaceDown)) {
      pan = { x: e.clientX, y: e.clientY, tx: view.tx, ty: view.ty };
      el.setPointerCapture(e.pointerId);
      el.classList.add("mc-panning");
      e.preventDefault();
      return;
    }
    if (e.button !== 0) return;
    e.preventDefault();
    if (!mc.strokeStart(toImage(e), e)) return; // that press already finished the stroke
    drawingPointer = e.pointerId;
    el.setPointerCapture(e.pointerId);
  });

  on(el, "pointermove", (e) => {
    view.moveCursor(e.clientX - rect.left, e.clientY - rect.top);
    if (pan) {
      view.panTo(pan.tx + e.clientX - pan.x, pan.ty + e.clientY - pan.y);
      return;
    }
    if (drawingPointer !== e.pointerId) {
      mc.hover(toImage(e));
      return;
    }
    const events = typeof e.getCoalescedEvents === "function" ? e.getCoalescedEvents() : [];
    const list = events.length ? events : [e];
    const pts = new Array(list.length);
    for (let i = 0; i < list.length; i++) pts[i] = toImage(list[i]);
    mc.strokeMove(pts, e);
  });

  const up = (e) => {
    if (pan) {
      pan = null;
      el.classList.remove("mc-panning");
      return;
    }
    if (drawingPointer !== e.pointerId) return;
    drawingPointer = null;
    if (e.type === "pointercancel") { mc.cancel(); return; }
    mc.strokeEnd(e);
  };
  on(el, "pointerup", up);
  on(el, "pointercancel", up);
  on(el, "pointerenter", () => { view.showCursor(true); });
  on(el, "pointerleave", () => { view.showCursor(false); });
  on(el, "dblclick", (e) => { mc.finishStroke(e); });
  on(el, "contextmenu", (e) => e.preventDefault());

  on(el, "wheel", (e) => {
    e.preventDefault();
    if (!e.ctrlKey && mc.wheel(e.deltaY)) return; // the tool's setting (Ctrl+wheel always zooms)
    refreshRect();
    const factor = Math.exp(-Math.sign(e.deltaY) * Math.min(Math.abs(e.deltaY), 100) / 300);
    view.zoomAt(factor, e.clientX - rect.left, e.clientY - rect.top);
  }, { passive: false });

  on(window, "keydown", (e) => {
    const t = e.target;
    if (t && (t.isContentEditable || /^(INPUT|TEXTAREA|SELECT)$/.test(t.tagName)) && t.type !== "range") return;
    if (document.querySelector("dialog[open]")) return;
    const k = keyName(e);
    const row = k ? mc.keys.indexOf(k) : -1;
    const action = row >= 0 ? DEFAULT_KEYS[row][1] : null;
    if (action === "pan") {
      panReady(true);
      e.preventDefault();
      return;
    }
    if (k === "enter" && (mc.finishStroke(e) || mc.acceptProposal())) { e.preventDefault(); return; }
    if (action && mc.action(action, e)) e.preventDefault();
  });
  on(window, "keyup", (e) => {
    const panKey = mc.keys[DEFAULT_KEYS.findIndex(([, a]) => a === "pan")];
    if (spaceDown && keyName(e).split("+").pop() === panKey.split("+").pop()) panReady(false);
  });
  on(window, "blur", () => { panReady(false); });

  return () => {
    for (const [target, type, fn, o] of listeners) target.removeEventListener(type, fn, o);
    listeners.length = 0;
  };
}
