"""The assisted tools of issue 28 in Chromium, on one small image made here (an object of one
colour on a background of another, both with a little texture): the magic wand fills exactly
the connected pixels within its tolerance (computed here with scipy, not with the page's code),
its wheel then widens the same region, the click and its wheel are one undoable step, and Alt
cuts; the superpixel brush fills exactly the server's superpixels its stroke crosses; the
stored revision holds the canvas's pixels and the share of them each tool drew. Refine shows
GrabCut's answer as a proposal that is accepted whole; a dataset with proposals off never asks
for one (the network log), one with them on shows the map thresholded to the area picked."""

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
    researcher = ctx  # kept open: it turns proposals on later

    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1200, "height": 800})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    page.on("pageerror", lambda e: errors.append(str(e)))
    requests: list[str] = []
    page.on("request", lambda req: requests.append(req.url))
    sign_in(page, "annotator")
    # keys remapped before the new tools' rows existed (17 rows; the brush moved to "w"): the
    # list is kept, the new rows get their default keys where still free (the wand loses "w")
    old_keys = ["w", "e", "l", "x", "[", "]", "ctrl+z", "ctrl+shift+z", "ctrl+y", "delete"]
    old_keys += ["+", "-", "0", "1", "o", "space", "escape"]
    page.evaluate("(k) => localStorage.setItem('salience-hotkeys:v1', JSON.stringify(k))", old_keys)
    page.goto(f"/#/annotate/{image_id}?dataset={dataset_id}")
    page.wait_for_selector(".mc-mask")
    page.keyboard.press("0")
    page.keyboard.press("s")
    expect(page.locator("button[data-tool=superpixels]")).to_have_attribute("aria-pressed", "true")
    page.keyboard.press("w")
    expect(page.locator("button[data-tool=brush]")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("button[data-tool=wand] kbd")).to_have_text("")
    page.get_by_role("button", name="Restore default keys").click()

    # a brush dab in the background
    page.keyboard.press("b")
    page.locator("input[data-size=brush]").fill("6")
    stroke(page, [(6, 40), (10, 40)], (W, H))
    drawn = read_mask(page).astype(bool)
    assert drawn.sum() > 0 and not (drawn & ellipse).any()

    # the wand: a click fills the connected region within 32 of the seed's colour at once; the
    # wheel then widens the same region (tolerance 36) in place; exactly what scipy finds
    page.keyboard.press("w")
    click(page, (34, 22))
    assert np.array_equal(read_mask(page).astype(bool), drawn | wand_region(rgb, (34, 22), 32))
    page.mouse.wheel(0, -100)
    expect(page.locator(".wand-tolerance .val")).to_have_text("36")
    region = wand_region(rgb, (34, 22), 36)
    assert np.array_equal(region, ellipse)  # the texture stays within the tolerance
    after_wand = read_mask(page).astype(bool)
    assert np.array_equal(after_wand, drawn | region)
    # the click and its wheel are one undoable step
    page.keyboard.press("Control+z")
    assert np.array_equal(read_mask(page).astype(bool), drawn)
    page.keyboard.press("Control+Shift+z")
    assert np.array_equal(read_mask(page).astype(bool), after_wand)
    # Alt cuts: the slider sets the tolerance to 0 (the seed's colour alone, connected)
    page.locator("input[name=tolerance]").fill("0")
    page.keyboard.down("Alt")
    click(page, (34, 22))
    page.keyboard.up("Alt")
    cut = wand_region(rgb, (34, 22), 0)
    assert cut.sum() >= 1
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
    assert "Magic wand" in rows and "Superpixel brush" in rows and "Refine" in rows
    assert page.locator(".proposal-controls").is_hidden()
    assert not [u for u in requests if re.search(r"/proposal\b", u)]

    # refine: a box dragged around the object comes back from GrabCut as a proposal; accepted,
    # it is one undoable step and the mask is exactly the server's answer
    page.keyboard.press("Delete")
    page.keyboard.press("r")
    stroke(page, [(12, 6), (58, 40)], (W, H))
    expect(page.locator(".proposal-box")).to_be_visible()
    assert read_mask(page).sum() == 0
    page.keyboard.press("a")
    expect(page.locator(".proposal-box")).to_be_hidden()
    accepted = read_mask(page)
    page.keyboard.press("Control+z")  # accepting was one step
    assert read_mask(page).sum() == 0
    page.keyboard.press("Control+Shift+z")
    assert np.array_equal(read_mask(page), accepted)
    answer = page.request.post(
        f"/api/annotate/images/{image_id}/refine", data={"box": [12, 6, 59, 41]}
    ).json()
    refined = png_bits(answer["mask_png_base64"])
    assert (refined & ellipse).sum() / (refined | ellipse).sum() >= 0.9
    assert np.array_equal(read_mask(page).astype(bool), refined)
    expect(page.locator(".save-status")).to_have_text("saved", timeout=10000)
    ann = page.request.get(f"/api/annotate/images/{image_id}").json()["annotation"]
    assert ann["provenance"] == {"refined": 1.0}

    # proposals on: the page asks for the map, the annotator picks the area, accepts it
    researcher.request.patch(f"/api/datasets/{dataset_id}", data={"proposals": "saliency"})
    requests.clear()
    page.reload()
    page.wait_for_selector(".mc-mask")
    expect(page.locator(".proposal-controls")).to_be_visible()
    page.locator("input[name=proposal-area]").fill("30")
    page.locator(".proposal-show").click()
    expect(page.locator(".proposal-box")).to_be_visible()
    page.keyboard.press("a")
    assert [u for u in requests if re.search(r"/proposal\b", u)]
    got = page.request.get(f"/api/annotate/images/{image_id}/proposal").json()
    proposed = top_share(png_values(got["map_png_base64"]), 0.30)
    with_proposal = read_mask(page).astype(bool)
    assert np.array_equal(with_proposal, refined | proposed)
    expect(page.locator(".save-status")).to_have_text("saved", timeout=10000)
    ann = page.request.get(f"/api/annotate/images/{image_id}").json()["annotation"]
    assert ann["proposal_source"] == "saliency"
    new = proposed & ~refined
    assert ann["provenance"] == pytest.approx(
        {
            "refined": refined.sum() / with_proposal.sum(),
            "proposal": new.sum() / with_proposal.sum(),
        },
        abs=1e-4,
    )
    assert errors == []
    ctx.close()
    researcher.close()


def png_values(b64: str) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))).convert("L"))


def png_bits(b64: str) -> np.ndarray:
    return png_values(b64) >= 128


def top_share(values: np.ndarray, share: float) -> np.ndarray:
    """The page's threshold: the lowest level whose pixels at or above it stay within share
    of the image (the levels taken from 255 down)."""
    hist = np.bincount(values.ravel(), minlength=256)
    want = share * values.size
    level, n = 255, hist[255]
    while level > 1 and n + hist[level - 1] <= want:
        level -= 1
        n += hist[level]
    return values >= level
