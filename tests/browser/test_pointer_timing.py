"""Drawing stays fluid on a 2048x2048 image: every pointermove handler (brush, big brush,
eraser) is timed in the page with performance.now() and the median must be under 16 ms. The
figures are printed in the test output.

The page carries no timing hooks of its own: the test times it from outside, with listeners
it adds before the app loads (TIMING_SCRIPT). An event's listeners on window in the capture
phase run before the canvas's own handlers and those in the bubble phase after them, so the
time between the two is the time the page spent handling that event."""

from __future__ import annotations

import io
import math
import re
import zipfile

import numpy as np
import pytest
from playwright.sync_api import expect

from .conftest import sign_in

pytestmark = pytest.mark.browser

SIZE = 2048

# Added to the page before any of its scripts (page.add_init_script), so these listeners come
# first on window in both phases. pointer: each pointermove with the button held (a stroke);
# commit: each pointerup (the end of the stroke, with its undo step); flush: each animation
# frame callback (on the annotate page, the upload of the changed pixels).
TIMING_SCRIPT = """
(() => {
  const timings = { pointer: [], flush: [], commit: [] };
  Object.defineProperty(window, "testTimings", { value: timings });
  const around = (type, list, when) => {
    let t0 = null;
    addEventListener(type, (e) => { t0 = when(e) ? performance.now() : null; }, true);
    addEventListener(type, () => {
      if (t0 !== null) list.push(performance.now() - t0);
      t0 = null;
    });
  };
  around("pointermove", timings.pointer, (e) => (e.buttons & 1) === 1);
  around("pointerup", timings.commit, () => true);
  const raf = window.requestAnimationFrame.bind(window);
  window.requestAnimationFrame = (fn) => raf((time) => {
    const t0 = performance.now();
    try { fn(time); } finally { timings.flush.push(performance.now() - t0); }
  });
})();
"""


def big_image_zip() -> bytes:
    from PIL import Image

    y, x = np.mgrid[0:SIZE, 0:SIZE]
    rgb = np.stack([(x // 8) % 256, (y // 8) % 256, ((x + y) // 16) % 256], -1).astype(np.uint8)
    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("texture/big.png", png.getvalue())
    return buf.getvalue()


def summary(values):
    v = sorted(values)
    return {
        "n": len(v),
        "median": v[len(v) // 2],
        "p99": v[min(len(v) - 1, math.ceil(0.99 * len(v)) - 1)],
        "max": v[-1],
    }


def test_pointer_handling_under_16ms_on_2048_image(chromium, live_server, seeded, capsys):
    # a researcher imports a 2048x2048 image
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    sign_in(page, "researcher")
    r = page.request.post(
        "/api/datasets/import",
        multipart={
            "name": "big texture",
            "file": {"name": "big.zip", "mimeType": "application/zip", "buffer": big_image_zip()},
        },
    )
    assert r.status == 201, r.text()
    dataset_id = r.json()["id"]
    images = page.request.get(f"/api/datasets/{dataset_id}/images").json()["data"]
    assert images[0]["width"] == SIZE and images[0]["height"] == SIZE
    image_id = images[0]["id"]
    ctx.close()

    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    page.add_init_script(TIMING_SCRIPT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, "annotator")
    page.goto(f"/#/annotate/{image_id}?dataset={dataset_id}")
    page.wait_for_selector(".mc-mask")
    assert page.evaluate("() => document.querySelector('.mc-mask').width") == SIZE
    page.keyboard.press("1")  # actual pixels: one image pixel per CSS pixel
    page.evaluate("() => Object.values(testTimings).forEach((list) => { list.length = 0; })")

    host = page.locator(".canvas-host").bounding_box()
    cx, cy = host["x"] + host["width"] / 2, host["y"] + host["height"] / 2
    radius = min(host["width"], host["height"]) * 0.35

    def scribble(n, phase):
        page.mouse.move(cx + radius * math.cos(phase), cy + radius * math.sin(2 * phase) / 2)
        page.mouse.down()
        for i in range(1, n + 1):
            t = phase + i * 2 * math.pi / n
            page.mouse.move(cx + radius * math.cos(t), cy + radius * math.sin(2 * t) / 2)
        page.mouse.up()

    for tool, size, phase in (("brush", 40, 0.0), ("brush", 200, 1.0), ("eraser", 120, 2.0)):
        page.keyboard.press("b" if tool == "brush" else "e")
        page.locator(f"input[data-size={tool}]").fill(str(size))
        scribble(200, phase)

    stats = page.evaluate("() => testTimings")
    pointer, flush, commit = (
        summary(stats["pointer"]),
        summary(stats["flush"]),
        summary(stats["commit"]),
    )
    with capsys.disabled():  # always in the test output, also without -s
        print(
            f"\n2048x2048 pointermove handler: n={pointer['n']} median={pointer['median']:.2f} ms "
            f"p99={pointer['p99']:.2f} ms max={pointer['max']:.2f} ms"
            f"\n  frame upload of changed pixels: median={flush['median']:.2f} ms "
            f"p99={flush['p99']:.2f} ms"
            f"\n  end of stroke (pointerup, with the undo step): median={commit['median']:.2f} ms "
            f"max={commit['max']:.2f} ms"
        )
    assert pointer["n"] >= 500
    assert pointer["median"] < 16, pointer
    assert pointer["p99"] < 50, pointer
    # and the strokes were saved without blocking the drawing
    expect(page.locator(".save-status")).to_have_text("saved", timeout=20000)
    assert re.search(rf"#/annotate/{image_id}", page.url)
    assert not errors, errors
    ctx.close()
