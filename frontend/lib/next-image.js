// Where an annotator goes next: the next image of their queue (optionally of one dataset), and
// the dataset they last chose, kept for the tab so the annotate page stays within it.
// Usage: import { LAST_DATASET_KEY, openNext } from "../lib/next-image.js";
//   if (!(await openNext(datasetId, navigate))) showAllDone();

import { api } from "./api.js";

/** sessionStorage key of the dataset last chosen in the queue ("" for all datasets). */
export const LAST_DATASET_KEY = "salience-annotate-dataset";

/** Open the next image of the queue (optionally of one dataset); returns false when empty. */
export async function openNext(datasetId, navigate) {
  const q = datasetId ? `?dataset_id=${encodeURIComponent(datasetId)}` : "";
  const next = await api(`/api/annotate/next${q}`);
  if (!next) return false;
  navigate(`#/annotate/${next.image.id}${datasetId ? `?dataset=${encodeURIComponent(datasetId)}` : ""}`);
  return true;
}
