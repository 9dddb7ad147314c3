"""Researcher: import a zip with a live progress bar, see it listed and in detail; a bad zip
shows the server's own sentence; instructions and annotators per image are editable."""

from __future__ import annotations

import io
import re
import zipfile

import pytest
from playwright.sync_api import expect

from .conftest import sign_in

pytestmark = pytest.mark.browser


def imagefolder_zip(tmp_path, classes=("bird", "plane"), per_class=3, size=40):
    from PIL import Image

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for ci, name in enumerate(classes):
            for i in range(per_class):
                b = io.BytesIO()
                Image.new("RGB", (size, size), (40 + 90 * ci, 20 * i, 120)).save(b, "PNG")
                zf.writestr(f"{name}/{i}.png", b.getvalue())
    path = tmp_path / "birds.zip"
    path.write_bytes(buf.getvalue())
    return path


def test_import_zip_lists_dataset_and_shows_details(page, seeded, tmp_path):
    sign_in(page, "researcher")
    page.goto("/#/datasets")
    page.fill(".upload-form input[name=name]", "birds and planes")
    page.fill(".upload-form input[name=description]", "browser import")
    page.set_input_files(".upload-form input[name=file]", str(imagefolder_zip(tmp_path)))
    with page.expect_response(lambda r: r.url.endswith("/api/datasets/import")) as resp:
        page.click(".upload-form button[type=submit]")
    assert resp.value.status == 201, resp.value.text()
    expect(page.locator(".upload-form .form-ok")).to_contain_text("6 images in 2 classes")
    link = page.locator("table.datasets a", has_text="birds and planes")
    expect(link).to_be_visible()

    link.click()
    expect(page).to_have_url(re.compile(r"#/datasets/\d+$"))
    expect(page.locator("h1")).to_have_text("birds and planes")
    expect(page.locator("table.classes tbody tr")).to_have_count(2)
    thumbs = page.locator(".thumbs img")
    expect(thumbs).to_have_count(6)
    # thumbnails really load through /api/images/{id}/file
    page.wait_for_function(
        "() => [...document.querySelectorAll('.thumbs img')]"
        ".every(i => i.complete && i.naturalWidth === 40)"
    )

    page.fill("form.settings textarea[name=instructions]", "Paint the wings.")
    page.fill("form.settings input[name=annotators_per_image]", "2")
    page.click("form.settings button[type=submit]")
    expect(page.locator("form.settings .form-ok")).to_have_text("Saved.")
    page.reload()
    expect(page.locator("form.settings textarea[name=instructions]")).to_have_value(
        "Paint the wings."
    )
    expect(page.locator("form.settings input[name=annotators_per_image]")).to_have_value("2")


def test_bad_zip_shows_the_server_sentence(page, seeded, tmp_path):
    sign_in(page, "researcher")
    page.goto("/#/datasets")
    bad = tmp_path / "broken.zip"
    bad.write_bytes(b"this is not a zip archive at all" * 10)
    page.fill(".upload-form input[name=name]", "broken")
    page.set_input_files(".upload-form input[name=file]", str(bad))
    with page.expect_response(lambda r: r.url.endswith("/api/datasets/import")) as resp:
        page.click(".upload-form button[type=submit]")
    assert 400 <= resp.value.status < 500
    sentence = resp.value.json()["detail"]
    assert isinstance(sentence, str) and sentence
    expect(page.locator(".upload-form .form-error")).to_have_text(sentence)
    expect(page.locator("table.datasets a", has_text="broken")).to_have_count(0)
