// Whole-stroke undo / redo of a MaskRaster: the mask as it was at the last commit, and one step
// per stroke holding only the bytes of the box it changed (before and after: the raster's owner
// codes, so who drew a pixel comes back with it), within a memory budget (the oldest go first).
// Usage: import { History } from "./history.js";
//   const h = new History(raster);
//   h.commit(label) -> true when the stroke changed pixels (one undo step);  h.revert();
//   h.undo() / h.redo() -> true when a step was applied;  h.canUndo;  h.reset();

const HISTORY_BYTES = 256 * 1024 * 1024; // undo memory budget (before+after bytes of all steps)

export class History {
  constructor(raster, { budgetBytes = HISTORY_BYTES } = {}) {
    this.raster = raster;
    this.width = raster.width;
    this.budgetBytes = budgetBytes;
    this.committed = new Uint8Array(raster.width * raster.height); // mask at the start of the stroke
    this.undoStack = [];
    this.redoStack = [];
    this.bytes = 0;
  }

  get canUndo() { return this.undoStack.length > 0; }
  get canRedo() { return this.redoStack.length > 0; }

  /** The committed bytes of a box. */
  committedBox([x0, y0, x1, y1]) {
    const w = this.width, bw = x1 - x0, out = new Uint8Array(bw * (y1 - y0));
    for (let y = y0, o = 0; y < y1; y++, o += bw) out.set(this.committed.subarray(y * w + x0, y * w + x1), o);
    return out;
  }

  _copyToCommitted(box) {
    const [x0, y0, x1, y1] = box;
    const bytes = this.raster.readBox(box);
    const w = this.width, bw = x1 - x0;
    for (let y = y0, o = 0; y < y1; y++, o += bw) this.committed.set(bytes.subarray(o, o + bw), y * w + x0);
  }

  /** Turn the pixels changed since the last commit into one undo step; false when none changed. */
  commit(label) {
    const raster = this.raster;
    const box = raster.strokeBox;
    raster.strokeBox = null;
    if (!box) return false;
    const before = this.committedBox(box);
    const after = raster.readBox(box);
    let same = true;
    for (let i = 0; i < after.length; i++) if (after[i] !== before[i]) { same = false; break; }
    if (same) return false;
    this._copyToCommitted(box);
    this.undoStack.push({ box, before, after, label });
    this.bytes += before.length * 2;
    for (const s of this.redoStack) this.bytes -= s.before.length * 2;
    this.redoStack = [];
    while (this.bytes > this.budgetBytes && this.undoStack.length > 1) {
      this.bytes -= this.undoStack.shift().before.length * 2;
    }
    return true;
  }

  /** Put back the committed pixels under the stroke in progress; true when there were any. */
  revert() {
    const box = this.raster.strokeBox;
    if (!box) return false;
    this.raster.writeBox(box, this.committedBox(box));
    this.raster.strokeBox = null;
    return true;
  }

  undo() {
    const step = this.undoStack.pop();
    if (!step) return false;
    this.raster.writeBox(step.box, step.before);
    this._copyToCommitted(step.box);
    this.redoStack.push(step);
    return true;
  }

  redo() {
    const step = this.redoStack.pop();
    if (!step) return false;
    this.raster.writeBox(step.box, step.after);
    this._copyToCommitted(step.box);
    this.undoStack.push(step);
    return true;
  }

  /** The raster was replaced as a whole (not undoable): it becomes the committed mask. */
  reset() {
    this.committed.set(this.raster.owner);
    this.undoStack = [];
    this.redoStack = [];
    this.bytes = 0;
  }
}
