"""Annotator: draw with the mouse on a real image; undo/redo by whole stroke gives back the
exact pixels; the mask reaches the server; offline strokes are kept and sent when the
network returns; a reload brings the drawing back (also when only the browser has it); an
expired login asks to sign in again in place and then the save goes through; submit opens
the next image."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pytest
from playwright.sync_api import expect

from .conftest import sign_in

pytestmark = pytest.mark.browser

READ_MASK = """() => new Promise((resolve) => requestAnimationFrame(() =>
requestAnimationFrame(() => {
  const c = document.querySelector('.mc-mask');
  const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const bits = new Uint8Array(c.width * c.height);
  let other = 0;
  for (let i = 0; i < bits.length; i++) {
    const a = d[i * 4 + 3];
    if (a !== 0 && a !== 255) other++;
    bits[i] = a >= 128 ? 1 : 0;
  }
  let s = '';
  for (let i = 0; i < bits.length; i++) s += String.fromCharCode(bits[i]);
  resolve({ w: c.width, h: c.height, bits: btoa(s), nonBinary: other });
})))"""


def read_mask(page) -> np.ndarray:
    m = page.evaluate(READ_MASK)
    assert m["nonBinary"] == 0, "the mask must be strictly binary"
    return np.frombuffer(base64.b64decode(m["bits"]), dtype=np.uint8).reshape(m["h"], m["w"])


def server_mask(page, image_id) -> np.ndarray | None:
    from PIL import Image

    r = page.request.get(f"/api/annotate/images/{image_id}")
    assert r.ok, r.text()
    ann = r.json()["annotation"]
    if not ann or not ann.get("mask_png_base64"):
        return None
    im = Image.open(io.BytesIO(base64.b64decode(ann["mask_png_base64"])))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        arr = np.asarray(im.convert("RGBA"))[:, :, 3]
    else:
        arr = np.asarray(im.convert("L"))
    return (arr >= 128).astype(np.uint8)


def stroke(page, points, image_size):
    """Drag the mouse through image-pixel points on the mask canvas."""
    box = page.locator(".mc-mask").bounding_box()
    w, h = image_size
    sx, sy = box["width"] / w, box["height"] / h

    def to_page(p):
        return box["x"] + (p[0] + 0.5) * sx, box["y"] + (p[1] + 0.5) * sy

    page.mouse.move(*to_page(points[0]))
    page.mouse.down()
    for p in points[1:]:
        page.mouse.move(*to_page(p), steps=4)
    page.mouse.up()


def set_size(page, tool, size):
    page.locator(f"input[data-size={tool}]").fill(str(size))


def status(page):
    return page.locator(".save-status")


def open_first_image(page, seeded):
    sign_in(page, "annotator")
    page.goto("/#/annotate")
    page.select_option("select[name=dataset]", str(seeded["dataset_id"]))
    page.get_by_role("button", name="Start annotating").click()
    expect(page).to_have_url(re.compile(r"#/annotate/\d+"))
    page.wait_for_selector(".mc-mask")
    image_id = int(re.search(r"#/annotate/(\d+)", page.url).group(1))
    size = page.evaluate(
        "() => { const c = document.querySelector('.mc-mask'); return [c.width, c.height]; }"
    )
    page.keyboard.press("0")  # fit the (small) image to the window so strokes are precise
    return image_id, tuple(size)


def test_draw_undo_redo_save_offline_reload_relogin(page, context, seeded):
    image_id, (w, h) = open_first_image(page, seeded)
    assert read_mask(page).sum() == 0
    expect(status(page)).to_have_text("saved")

    # three strokes: brush, brush, eraser
    page.keyboard.press("b")
    set_size(page, "brush", max(2, w // 10))
    stroke(page, [(w * 0.2, h * 0.2), (w * 0.7, h * 0.25), (w * 0.75, h * 0.4)], (w, h))
    s1 = read_mask(page)
    stroke(page, [(w * 0.2, h * 0.7), (w * 0.5, h * 0.75)], (w, h))
    s2 = read_mask(page)
    page.keyboard.press("e")
    set_size(page, "eraser", max(2, w // 8))
    stroke(page, [(w * 0.45, h * 0.1), (w * 0.45, h * 0.9)], (w, h))
    s3 = read_mask(page)
    assert 0 < s1.sum() < s2.sum() and s3.sum() < s2.sum()

    # undo and redo move by whole strokes and restore the exact pixels
    page.keyboard.press("Control+z")
    assert np.array_equal(read_mask(page), s2)
    page.keyboard.press("Control+z")
    assert np.array_equal(read_mask(page), s1)
    page.keyboard.press("Control+Shift+z")
    assert np.array_equal(read_mask(page), s2)
    page.keyboard.press("Control+y")
    assert np.array_equal(read_mask(page), s3)
    page.keyboard.press("Control+z")
    assert np.array_equal(read_mask(page), s2)

    # the mask reaches the server
    expect(status(page)).to_have_text("saved", timeout=10000)
    assert np.array_equal(server_mask(page, image_id), s2)

    # offline: strokes are kept and counted, then sent when the network returns
    context.set_offline(True)
    page.keyboard.press("b")
    stroke(page, [(w * 0.8, h * 0.8), (w * 0.9, h * 0.9)], (w, h))
    expect(status(page)).to_have_text("offline: 1 change kept", timeout=10000)
    stroke(page, [(w * 0.1, h * 0.9), (w * 0.15, h * 0.5)], (w, h))
    expect(status(page)).to_have_text("offline: 2 changes kept", timeout=10000)
    s_off = read_mask(page)
    context.set_offline(False)
    expect(status(page)).to_have_text("saved", timeout=15000)
    assert np.array_equal(server_mask(page, image_id), s_off)

    # a reload brings the drawing back
    page.reload()
    page.wait_for_selector(".mc-mask")
    assert np.array_equal(read_mask(page), s_off)
    expect(status(page)).to_have_text("saved")

    # the server is unreachable (as in a restart): the drawing lives in the browser only,
    # survives a reload, and reaches the server once it answers again
    page.keyboard.press("0")
    page.route("**/api/annotate/images/*/mask", lambda route: route.abort())
    stroke(page, [(w * 0.3, h * 0.45), (w * 0.6, h * 0.5)], (w, h))
    expect(status(page)).to_have_text("offline: 1 change kept", timeout=10000)
    s_local = read_mask(page)
    page.reload()
    page.wait_for_selector(".mc-mask")
    assert np.array_equal(read_mask(page), s_local)
    expect(page.locator(".note")).to_contain_text("Restored")
    page.unroute("**/api/annotate/images/*/mask")
    page.evaluate("() => window.dispatchEvent(new Event('online'))")
    expect(status(page)).to_have_text("saved", timeout=15000)
    assert np.array_equal(server_mask(page, image_id), s_local)

    # the login expires: the stroke is kept, a dialog asks to sign in again in place
    page.keyboard.press("0")
    context.clear_cookies()
    stroke(page, [(w * 0.6, h * 0.6), (w * 0.65, h * 0.85)], (w, h))
    dialog = page.locator("dialog.login-dialog")
    expect(dialog).to_be_visible(timeout=10000)
    expect(status(page)).to_have_text("signed out: 1 change kept")
    assert re.search(rf"#/annotate/{image_id}", page.url)
    dialog.locator("input[name=password]").fill("annotator-pass")
    dialog.locator("button[type=submit]").click()
    expect(dialog).to_be_hidden()
    expect(status(page)).to_have_text("saved", timeout=15000)
    s_relogin = read_mask(page)
    assert np.array_equal(server_mask(page, image_id), s_relogin)

    # submit is immediate and opens the next image
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(lambda url: f"#/annotate/{image_id}" not in url, timeout=5000)
    page.wait_for_selector(".mc-mask")
    r = page.request.get(f"/api/annotate/images/{image_id}")
    assert r.json()["annotation"]["status"] == "submitted"


def test_lasso_fills_and_cuts_remap_hotkey_and_skip_needs_a_reason(page, seeded):
    image_id, (w, h) = open_first_image(page, seeded)
    # hotkeys are listed and remappable: brush moves from "b" to "n"
    page.locator(".hotkeys button.key").first.click()
    page.keyboard.press("n")
    expect(page.locator(".hotkeys button.key").first).to_have_text("n")
    page.keyboard.press("e")
    expect(page.locator("button[data-tool=eraser]")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("n")
    expect(page.locator("button[data-tool=brush]")).to_have_attribute("aria-pressed", "true")
    # a key already used swaps, and says so: the eraser is not left without a key (issue 29)
    keys = page.locator(".hotkeys button.key")
    keys.first.click()
    page.keyboard.press("e")
    expect(keys.first).to_have_text("e")
    expect(keys.nth(1)).to_have_text("n")
    note = page.locator(".hotkeys .keys-note")
    expect(note).to_have_text(
        "“e” was the key for Eraser: the two swapped, so Eraser is now on “n”."
    )
    page.keyboard.press("n")
    expect(page.locator("button[data-tool=eraser]")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("e")
    expect(page.locator("button[data-tool=brush]")).to_have_attribute("aria-pressed", "true")
    page.get_by_role("button", name="Restore default keys").click()
    expect(page.locator(".hotkeys button.key").first).to_have_text("b")
    expect(note).to_be_hidden()
    page.keyboard.press("l")
    # freehand lasso adds a filled region
    stroke(
        page,
        [(w * 0.2, h * 0.2), (w * 0.8, h * 0.2), (w * 0.8, h * 0.8), (w * 0.2, h * 0.8)],
        (w, h),
    )
    filled = read_mask(page)
    assert filled[h // 2, w // 2] == 1 and filled[2, 2] == 0
    # holding Alt while closing cuts a hole
    page.keyboard.down("Alt")
    stroke(
        page,
        [(w * 0.4, h * 0.4), (w * 0.6, h * 0.4), (w * 0.6, h * 0.6), (w * 0.4, h * 0.6)],
        (w, h),
    )
    page.keyboard.up("Alt")
    cut = read_mask(page)
    assert cut[h // 2, w // 2] == 0 and cut[int(h * 0.3), int(w * 0.3)] == 1
    expect(status(page)).to_have_text("saved", timeout=10000)
    assert np.array_equal(server_mask(page, image_id), cut)

    # a short window with the skip form open: the instructions keep their whole lines
    # (the side panel scrolls) rather than collapse to a clipped half line (issue 29)
    page.set_viewport_size({"width": 1400, "height": 520})
    page.get_by_role("button", name="Skip…").click()
    box = page.evaluate("""() => {
      const el = document.querySelector(".annotate .instructions");
      const cs = getComputedStyle(el);
      const line = parseFloat(cs.lineHeight) || 1.2 * parseFloat(cs.fontSize);
      const pad = parseFloat(cs.paddingTop) + parseFloat(cs.paddingBottom);
      const needed = Math.min(el.scrollHeight - pad, 2 * line);
      return { inner: el.clientHeight - pad, needed, line };
    }""")
    assert box["inner"] >= box["needed"] - 1, box
    page.set_viewport_size({"width": 1400, "height": 900})
    page.select_option(".skip-form select[name=reason]", "")
    page.get_by_role("button", name="Skip image").click()
    expect(page.locator(".side .form-error")).to_have_text("Say why you skip this image.")
    page.fill(".skip-form input[name=other]", "Two objects, unclear which one")
    page.get_by_role("button", name="Skip image").click()
    page.wait_for_url(lambda url: f"#/annotate/{image_id}" not in url, timeout=5000)
