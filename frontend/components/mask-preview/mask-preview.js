// Read-only preview of a mask over its image (review, consensus): the image at its own pixels,
// dimmed outside the mask so the salient region reads on any image colour. Grey masks
// (consensus) dim in proportion.
// Usage: import { drawMaskPreview } from "/static/components/mask-preview/mask-preview.js";
//   const canvas = document.createElement("canvas");
//   await drawMaskPreview(canvas, "/api/images/3/file", "/api/annotations/9/mask.png");

function load(src) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error(`Could not load ${src}`));
    img.src = src;
  });
}

/** Draw image + tinted mask into canvas (sized to the image); returns the salient fraction. */
export async function drawMaskPreview(canvas, imageUrl, maskUrl, { dim = 0.7 } = {}) {
  const [img, mask] = await Promise.all([load(imageUrl), load(maskUrl)]);
  const w = img.naturalWidth, h = img.naturalHeight;
  canvas.width = w;
  canvas.height = h;
  const ctx = canvas.getContext("2d");
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, 0, 0);
  const m = document.createElement("canvas");
  m.width = w;
  m.height = h;
  const mctx = m.getContext("2d", { willReadFrequently: true });
  mctx.imageSmoothingEnabled = false;
  mctx.drawImage(mask, 0, 0, w, h);
  const data = mctx.getImageData(0, 0, w, h);
  const d = data.data;
  let hasAlpha = false;
  for (let i = 3; i < d.length; i += 4) if (d[i] < 255) { hasAlpha = true; break; }
  let on = 0;
  for (let i = 0; i < d.length; i += 4) {
    const v = hasAlpha ? d[i + 3] : d[i]; // salience 0..255
    if (v >= 128) on++;
    d[i] = d[i + 1] = d[i + 2] = 0;
    d[i + 3] = Math.round((255 - v) * dim);
  }
  mctx.putImageData(data, 0, 0);
  ctx.drawImage(m, 0, 0);
  return on / (w * h);
}
