"""Tools sized to the image: the default brush and eraser are a share of the image's shorter
side (4 % and 6 %, at least 1 px; components/mask-canvas defaultToolSizes), so a 28 px digit
and a 2048 px photo open with tools of the same relative size; a size the annotator picks is
remembered per annotator and dataset, and leaves another dataset's default alone."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from tests.conftest import tiny_imagefolder_zip

from .conftest import sign_in
from .test_pointer_timing import big_image_zip

pytestmark = pytest.mark.browser


def _import(page, name: str, buffer: bytes) -> tuple[int, int]:
    r = page.request.post(
        "/api/datasets/import",
        multipart={
            "name": name,
            "file": {"name": f"{name}.zip", "mimeType": "application/zip", "buffer": buffer},
        },
    )
    assert r.status == 201, r.text()
    dataset_id = r.json()["id"]
    images = page.request.get(f"/api/datasets/{dataset_id}/images").json()["data"]
    return dataset_id, images[0]["id"]


def _open(page, image_id: int, dataset_id: int) -> None:
    page.goto(f"/#/annotate/{image_id}?dataset={dataset_id}")
    page.reload()  # a hash change alone would not remount when only the query differs
    page.wait_for_selector(".mc-mask")


def _sizes(page) -> tuple[str, str]:
    return (
        page.locator("input[data-size=brush]").input_value(),
        page.locator("input[data-size=eraser]").input_value(),
    )


def test_default_sizes_follow_the_image_and_picks_are_kept_per_dataset(
    chromium, live_server, seeded
):
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    sign_in(page, "researcher")
    small_ds, small_img = _import(page, "digits 28", tiny_imagefolder_zip(per_class=1, size=28))
    other_ds, other_img = _import(page, "digits 28 b", tiny_imagefolder_zip(per_class=1, size=28))
    big_ds, big_img = _import(page, "big texture", big_image_zip())
    ctx.close()

    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    sign_in(page, "annotator")

    # 28 px: 4 % is 1.12 -> 1 px brush, 6 % is 1.68 -> 2 px eraser (was 24 and 40 px)
    _open(page, small_img, small_ds)
    assert _sizes(page) == ("1", "2")
    expect(page.locator(".brush-size .val")).to_have_text("1 px")

    # 2048 px: 82 px brush, 123 px eraser
    _open(page, big_img, big_ds)
    assert page.evaluate("() => document.querySelector('.mc-mask').width") == 2048
    assert _sizes(page) == ("82", "123")

    # a size picked on the big dataset is kept for it across a reload...
    page.locator("input[data-size=brush]").fill("200")
    page.wait_for_timeout(400)
    _open(page, big_img, big_ds)
    assert _sizes(page) == ("200", "123")

    # ...and leaves the other datasets' defaults alone
    _open(page, small_img, small_ds)
    assert _sizes(page) == ("1", "2")

    # a size picked on one 28 px dataset does not change another 28 px dataset's default
    page.locator("input[data-size=eraser]").fill("5")
    page.wait_for_timeout(400)
    _open(page, other_img, other_ds)
    assert _sizes(page) == ("1", "2")
    _open(page, small_img, small_ds)
    assert _sizes(page) == ("1", "5")
    _open(page, big_img, big_ds)
    assert _sizes(page) == ("200", "123")

    # the picks are kept under this annotator's own key (a shared browser keeps each one's)
    prefs = page.evaluate(
        "() => Object.keys(localStorage).filter((k) => k.startsWith('salience-annotate-prefs'))"
    )
    assert len(prefs) == 1
    assert errors == []
    ctx.close()
