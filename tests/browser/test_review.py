"""Review: an annotator submits a mask; the researcher sees it over its image in the review
queue, cannot reject without a comment, rejects with one; the mask returns first in the
annotator's queue with the comment and the drawing as it was."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from playwright.sync_api import expect

from .conftest import sign_in
from .test_annotate import open_first_image, read_mask, stroke

pytestmark = pytest.mark.browser


def test_reject_with_comment_returns_mask_to_annotator(chromium, live_server, seeded):
    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    image_id, (w, h) = open_first_image(page, seeded)
    page.locator("input[data-size=brush]").fill(str(max(2, w // 6)))
    stroke(page, [(w * 0.3, h * 0.3), (w * 0.7, h * 0.6)], (w, h))
    drawn = read_mask(page)
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(lambda url: f"#/annotate/{image_id}" not in url)

    rctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    review = rctx.new_page()
    sign_in(review, "researcher")
    review.locator(".app-header nav").get_by_role("link", name="Review").click()
    card = review.locator(".review-card").first
    expect(card).to_contain_text("annotator")
    # the preview canvas is the image at its own size
    expect(card.locator("canvas.mask-preview")).to_have_attribute("width", str(w))
    card.get_by_role("button", name="Reject").click()
    expect(card.locator(".form-error")).to_contain_text("Say why")
    card.locator("textarea[name=comment]").fill("Cover the whole object, please.")
    card.get_by_role("button", name="Reject").click()
    expect(card.locator(".status")).to_have_text("rejected")
    rctx.close()

    page.goto("/#/annotate")
    page.get_by_role("button", name="Start annotating").click()
    expect(page).to_have_url(re.compile(rf"#/annotate/{image_id}\b"))
    expect(page.locator(".review-note")).to_contain_text("Cover the whole object, please.")
    assert np.array_equal(read_mask(page), drawn)
    ctx.close()


def test_accept_then_agreement_mask_set_and_export(chromium, live_server, seeded):
    import io
    import zipfile

    ctx = chromium.new_context(base_url=live_server, viewport={"width": 1400, "height": 900})
    page = ctx.new_page()
    image_id, (w, h) = open_first_image(page, seeded)
    page.locator("input[data-size=brush]").fill(str(max(2, w // 5)))
    stroke(page, [(w * 0.2, h * 0.5), (w * 0.8, h * 0.5)], (w, h))
    page.get_by_role("button", name="Submit").click()
    page.wait_for_url(lambda url: f"#/annotate/{image_id}" not in url)
    ctx.close()

    # read from Berlin: the times shown are local, with their zone (issue 29)
    rctx = chromium.new_context(
        base_url=live_server,
        viewport={"width": 1400, "height": 1000},
        timezone_id="Europe/Berlin",
        locale="en-US",
    )
    page = rctx.new_page()
    sign_in(page, "researcher")
    page.goto(f"/#/review?dataset={seeded['dataset_id']}&status=submitted")
    card = page.locator(".review-card").first
    card.get_by_role("button", name="Accept").click()
    expect(card.locator(".status")).to_have_text("accepted")

    page.goto(f"/#/datasets/{seeded['dataset_id']}")
    page.get_by_role("button", name="Compute").click()
    expect(page.locator("table.annotators tbody tr")).to_have_count(1)
    expect(page.locator("table.annotators tbody tr")).to_contain_text("annotator")

    page.fill("form.freeze input[name=name]", "first set")
    page.get_by_role("button", name="Freeze consensus").click()
    expect(page.locator("table.sets tbody tr", has_text="first set")).to_have_count(1)
    # made just now: the Created cell reads Berlin's time (CET, UTC+1 in winter; CEST in
    # summer) with its zone, within a minute or two of now
    berlin = datetime.now(ZoneInfo("Europe/Berlin"))
    created = page.locator("table.sets tbody tr", has_text="first set").locator("td").nth(4)
    shown = created.inner_text()
    zone = "GMT+2" if berlin.utcoffset() == timedelta(hours=2) else "GMT+1"
    assert shown.endswith(zone), shown
    when = datetime.strptime(shown.rsplit(" ", 1)[0], "%m/%d/%Y, %I:%M:%S %p")
    assert abs(when - berlin.replace(tzinfo=None)) < timedelta(minutes=2), (shown, berlin)

    # freezing the same masks again under a new name: the form says which set holds them
    page.fill("form.freeze input[name=name]", "second name")
    page.get_by_role("button", name="Freeze consensus").click()
    note = page.locator(".mask-sets .freeze-note")
    expect(note).to_be_visible()
    expect(note).to_contain_text("The same masks are already frozen as \u201cfirst set\u201d")
    expect(page.locator("table.sets tbody tr")).to_have_count(1)
    expect(page.locator("form.freeze input[name=name]")).to_have_value("second name")
    # the set's filter reads as words, and the table stays inside its card, even narrow
    expect(page.locator("table.sets td.set-filter")).to_have_text(
        "masks accepted · at least 1 annotator per image · any agreement"
    )
    page.set_viewport_size({"width": 900, "height": 900})
    over = page.evaluate("""() => {
      const card = document.querySelector(".mask-sets");
      const table = card.querySelector("table.sets");
      return { card: card.scrollWidth - card.clientWidth,
               table: table.getBoundingClientRect().right - card.getBoundingClientRect().right,
               page: document.documentElement.scrollWidth - document.documentElement.clientWidth };
    }""")
    assert over["card"] <= 0 and over["table"] <= 0 and over["page"] <= 0, over
    page.set_viewport_size({"width": 1400, "height": 1000})

    href = page.locator("a.export-png").get_attribute("href")
    r = page.request.get(href)
    assert r.ok, r.text()
    names = zipfile.ZipFile(io.BytesIO(r.body())).namelist()
    assert any(n.endswith(".png") for n in names), names
    rctx.close()
