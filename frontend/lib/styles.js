// How a component brings its own CSS: one <link rel="stylesheet"> in document.head per
// stylesheet, added the first time it is asked for (a link already there, from index.html or an
// earlier call, is reused).
// Usage (in a component module, next to customElements.define):
//   import { linkStylesheet } from "../../lib/styles.js";
//   linkStylesheet(new URL("./upload-form.css", import.meta.url));

/** Add a stylesheet link to document.head unless one with the same URL is there; returns it. */
export function linkStylesheet(url) {
  const href = new URL(String(url), document.baseURI).href;
  for (const link of document.head.querySelectorAll("link[rel=stylesheet]")) {
    if (link.href === href) return link;
  }
  const link = document.createElement("link");
  link.rel = "stylesheet";
  link.href = href;
  document.head.appendChild(link);
  return link;
}
