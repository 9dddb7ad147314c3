// Annotator's queue (#/annotate, also their home: pages/home.js shows the same component):
// datasets with images left to annotate and masks a reviewer returned (flagged: they open
// first), a dataset picker and "Start annotating", which opens the next image.
// Usage: routed by app.js; exports mount(root, ctx).

import { html, render } from "../lib/html.js";
import "../components/annotation-queue/annotation-queue.js";

export async function mount(root, { session, navigate }) {
  render(root, html`<section class="page"><h1>Annotation queue</h1></section>`);
  const queue = Object.assign(document.createElement("annotation-queue"), { session, navigate });
  root.querySelector(".page").append(queue);
  await queue.loading;
}
