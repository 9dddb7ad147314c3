"""The assisted tools of issue 28 in Chromium, on one small image made here (an object of one
colour on a background of another, both with a little texture): the magic wand selects exactly
the connected pixels within its tolerance (computed here with scipy, not with the page's code),
its wheel changes the tolerance before it applies, it applies as one undoable step and cuts
with Alt; the superpixel brush fills exactly the server's superpixels its stroke crosses; the
stored revision holds the canvas's pixels and the share of them each tool drew."""

from __future__ import annotations

import base64
import io
import re
import zipfile
import zlib

import numpy as np
import pytest
from playwright.sync_api import expect
from scipy import ndimage

from .conftest import sign_in
from .test_annotate import read_mask, server_mask, stroke

pytestmark = pytest.mark.browser

W, H = 64, 48
OBJECT = (200, 60, 40)
BACKGROUND = (40, 90, 150)


def object_image() -> tuple[np.ndarray, np.ndarray]:
    """An ellipse of OBJECT colour on BACKGROUND, each pixel off by up to 8 per channel."""
    y, x = np.mgrid[0:H, 0:W]
    ellipse = ((x - 34) / 18) ** 2 + ((y - 22) / 12) ** 2 <= 1
    rng = np.random.default_rng(28)
    rgb = np.where(ellipse[..., None], OBJECT, BACKGROUND) + rng.integers(-8, 9, (H, W, 3))
    return rgb.astype(np.uint8), ellipse


def image_zip(rgb: np.ndarray) -> bytes:
    from PIL import Image

    png = io.BytesIO()
    Image.fromarray(rgb).save(png, "PNG")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("bird/object.png", png.getvalue())
    return buf.getvalue()


def wand_region(rgb: np.ndarray, seed: tuple[int, int], tolerance: int) -> np.ndarray:
    """The 4-connected pixels around seed (x, y) whose R, G and B each differ from the seed's
    by at most tolerance."""
    x, y = seed
    diff = np.abs(rgb.astype(int) - rgb[y, x].astype(int)).max(-1)
    labels, _ = ndimage.label(diff <= tolerance)
    return labels == labels[y, x]


def click(page, p, **kw):
    box = page.locator(".mc-mask").bounding_box()
    sx, sy = box["width"] / W, box["height"] / H
    page.mouse.click(box["x"] + (p[0] + 0.5) * sx, box["y"] + (p[1] + 0.5) * sy, **kw)


def test_wand_and_superpixels_draw_exactly_and_record_their_share(chromium, live_server, seeded):
    rgb, ellipse = object_image()
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1200, "height": 800})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, "researcher")
    r = page.request.post(
        "/api/datasets/import",
        multipart={
            "name": "one bird",
            "file": {"name": "b.zip", "mimeType": "application/zip", "buffer": image_zip(rgb)},
        },
    )
    assert r.status == 201, r.text()
    dataset_id = r.json()["id"]
    image_id = page.request.get(f"/api/datasets/{dataset_id}/images").json()["data"][0]["id"]
    ctx.close()

    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1200, "height": 800})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    sign_in(page, "annotator")
    page.goto(f"/#/annotate/{image_id}?dataset={dataset_id}")
    page.wait_for_selector(".mc-mask")
    page.keyboard.press("0")

    # a brush dab in the background
    page.keyboard.press("b")
    page.locator("input[data-size=brush]").fill("6")
    stroke(page, [(6, 40), (10, 40)], (W, H))
    drawn = read_mask(page).astype(bool)
    assert drawn.sum() > 0 and not (drawn & ellipse).any()

    # the wand previews (nothing drawn yet), the wheel raises the tolerance from 32 to 36,
    # a click inside applies: exactly the connected region within 36 of the seed's colour
    page.keyboard.press("w")
    click(page, (34, 22))
    assert np.array_equal(read_mask(page).astype(bool), drawn)
    page.mouse.wheel(0, -100)
    expect(page.locator(".wand-tolerance .val")).to_have_text("36")
    click(page, (30, 20))
    region = wand_region(rgb, (34, 22), 36)
    assert np.array_equal(region, ellipse)  # the texture stays within the tolerance
    after_wand = read_mask(page).astype(bool)
    assert np.array_equal(after_wand, drawn | region)
    # one undoable step
    page.keyboard.press("Control+z")
    assert np.array_equal(read_mask(page).astype(bool), drawn)
    page.keyboard.press("Control+Shift+z")
    assert np.array_equal(read_mask(page).astype(bool), after_wand)
    # Alt cuts: the slider narrows the tolerance to 0 (the seed's colour alone, connected)
    page.locator("input[name=tolerance]").fill("0")
    click(page, (34, 22))
    page.keyboard.down("Alt")
    click(page, (34, 22))
    page.keyboard.up("Alt")
    cut = wand_region(rgb, (34, 22), 0)
    assert np.array_equal(read_mask(page).astype(bool), after_wand & ~cut)
    page.keyboard.press("Control+z")
    assert np.array_equal(read_mask(page).astype(bool), after_wand)

    # the superpixel brush: a stroke along row 5 fills every server superpixel it crosses
    page.keyboard.press("s")
    expect(page.locator(".superpixel-state")).to_have_text("")
    sp = page.request.get(f"/api/annotate/images/{image_id}/superpixels?size=medium").json()
    labels = np.frombuffer(zlib.decompress(base64.b64decode(sp["labels"])), "<u2")
    labels = labels.reshape(H, W)
    assert sp["count"] == labels.max() + 1 > 4
    stroke(page, [(2, 5), (40, 5)], (W, H))
    filled = np.isin(labels, np.unique(labels[5, 2:41]))
    final = read_mask(page).astype(bool)
    assert np.array_equal(final, after_wand | filled)

    # the server holds the same pixels, and who drew them: the last tool over a pixel owns it
    expect(page.locator(".save-status")).to_have_text("saved", timeout=10000)
    assert np.array_equal(server_mask(page, image_id).astype(bool), final)
    ann = page.request.get(f"/api/annotate/images/{image_id}").json()["annotation"]
    total = final.sum()
    expected = {
        "superpixels": filled.sum() / total,
        "wand": (region & ~filled).sum() / total,
        "drawn": (drawn & ~region & ~filled).sum() / total,
    }
    assert ann["provenance"].keys() == {k for k, v in expected.items() if v > 0}
    for tool, share in ann["provenance"].items():
        assert share == pytest.approx(expected[tool], abs=1e-4), tool
    assert ann["proposal_source"] is None

    # the tools are in the hotkey list, and this dataset (proposals off) never asked for one
    rows = page.locator("hotkey-table").inner_text()
    assert "Magic wand" in rows and "Superpixel brush" in rows
    assert not [u for u in requests if re.search(r"/proposal\b", u)]
    assert errors == []
    ctx.close()
