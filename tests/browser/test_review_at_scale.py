"""Review and queues at scale, through the pages: 30 masks reviewed with bulk accept and "Load
more" (all 30, nothing skipped, the empty one flagged and left out of the frozen set); keyboard
review; one image's masks from three annotators side by side with their pairwise IoU; and the
annotator's side: an empty mask asks before it is submitted, a small image opens fitted, the
brush size and zoom survive a reload, and a returned mask is flagged on the home page."""

from __future__ import annotations

import re

import numpy as np
import pytest
import sqlalchemy as sa
from playwright.sync_api import expect

from backend.models import Annotation, Dataset
from tests.backend.test_annotation import add_annotator, body, put, square
from tests.backend.test_assignment_and_order import SIZE, _import

from .conftest import sign_in

pytestmark = pytest.mark.browser


def _submit(client, h, image_id, mask, **extra):
    assert put(client, h, image_id, body(mask)).status_code == 200
    r = client.post(f"/api/annotate/images/{image_id}/submit", headers=h, json=extra)
    assert r.status_code == 200, r.text


def _statuses(db) -> list[str]:
    db.expire_all()
    return sorted(db.scalars(sa.select(Annotation.status)).all())


def test_bulk_accept_and_load_more_review_all_thirty(page, client, auth, users, db):
    world = _import(client, auth, "thirty", per_class=10)
    ids = [i["id"] for i in world["images"]]
    a = auth["annotator"]
    for k, image_id in enumerate(ids):
        if k == 7:
            _submit(client, a, image_id, np.zeros((SIZE, SIZE), bool), confirm_empty=True)
        else:
            _submit(client, a, image_id, square(4 + k, 4, 20))

    sign_in(page, "researcher")
    page.goto(f"/#/review?dataset={world['id']}&status=submitted")
    cards = page.locator(".review-card")
    expect(cards).to_have_count(24)
    expect(page.locator(".count")).to_have_text("30 submitted")
    expect(page.get_by_role("button", name="Load more")).to_be_visible()

    page.get_by_label("Select all shown").check()
    expect(page.locator(".selected-count")).to_have_text("24 selected")
    page.get_by_role("button", name="Accept selected").click()
    expect(page.locator(".review-card.decided-accepted")).to_have_count(24)
    expect(page.locator(".count")).to_have_text("6 submitted")

    # the bug this replaces: with offsets, the next page started at 24 of the 6 left
    page.get_by_role("button", name="Load more").click()
    expect(cards).to_have_count(30)
    expect(page.get_by_role("button", name="Load more")).to_be_hidden()
    shown = page.eval_on_selector_all(
        ".review-card", "els => els.map(e => Number(e.dataset.image))"
    )
    assert sorted(shown) == sorted(ids) and len(set(shown)) == 30
    # the empty mask is flagged, and only it
    expect(page.locator(".review-card .flag-empty")).to_have_count(1)
    flagged = page.locator(".review-card", has=page.locator(".flag-empty"))
    expect(flagged).to_have_attribute("data-image", str(ids[7]))

    page.get_by_label("Select all shown").check()
    expect(page.locator(".selected-count")).to_have_text("6 selected")
    page.get_by_role("button", name="Accept selected").click()
    expect(page.locator(".review-card.decided-accepted")).to_have_count(30)
    expect(page.locator(".count")).to_have_text("0 submitted")
    assert _statuses(db) == ["accepted"] * 30

    r = client.post(
        f"/api/datasets/{world['id']}/mask-sets",
        headers=auth["researcher"],
        json={"name": "all thirty"},
    )
    assert r.status_code == 201, r.text
    assert r.json()["num_images"] == 29 and r.json()["filter"]["empty_masks_excluded"] == 1


def test_bulk_reject_needs_a_comment(page, client, seeded, auth, db):
    for image_id in seeded["image_ids"][:3]:
        _submit(client, auth["annotator"], image_id, square())
    sign_in(page, "researcher")
    page.goto(f"/#/review?dataset={seeded['dataset_id']}")
    expect(page.locator(".review-card")).to_have_count(3)
    page.locator(".review-card input[name=selected]").nth(0).check()
    page.locator(".review-card input[name=selected]").nth(2).check()
    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator(".bulk-error")).to_contain_text("Say why")
    assert _statuses(db) == ["submitted"] * 3
    page.fill("input[name=bulk-comment]", "cover the whole animal")
    page.get_by_role("button", name="Reject selected").click()
    expect(page.locator(".review-card.decided-rejected")).to_have_count(2)
    assert _statuses(db) == ["rejected", "rejected", "submitted"]
    db.expire_all()
    comments = set(db.scalars(sa.select(Annotation.review_comment)).all())
    assert comments == {"cover the whole animal", ""}


def test_keyboard_review(page, client, seeded, auth, db):
    ids = seeded["image_ids"][:4]
    for image_id in ids:
        _submit(client, auth["annotator"], image_id, square())
    sign_in(page, "researcher")
    page.goto(f"/#/review?dataset={seeded['dataset_id']}")
    cards = page.locator(".review-card")
    expect(cards).to_have_count(4)
    hint = page.locator(".key-hint")
    expect(hint).to_be_visible()
    for word in ("next", "previous", "accept", "reject", "select", "side by side"):
        expect(hint).to_contain_text(word)
    expect(cards.nth(0)).to_have_class(re.compile(r"\bcurrent\b"))

    page.keyboard.press("j")
    page.keyboard.press("ArrowRight")
    expect(cards.nth(2)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("k")
    expect(cards.nth(1)).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("a")  # accept card 1, move on to card 2
    expect(cards.nth(1).locator(".status")).to_have_text("accepted")
    expect(cards.nth(2)).to_have_class(re.compile(r"\bcurrent\b"))

    page.keyboard.press("r")  # no comment yet: asked for one, nothing sent
    expect(cards.nth(2).locator(".form-error")).to_contain_text("Say why")
    expect(cards.nth(2).locator("textarea[name=comment]")).to_be_focused()
    page.keyboard.type("too small")  # typing in the comment does not trigger the keys
    page.keyboard.press("Escape")
    page.keyboard.press("r")
    expect(cards.nth(2).locator(".status")).to_have_text("rejected")
    expect(cards.nth(3)).to_have_class(re.compile(r"\bcurrent\b"))

    page.keyboard.press("x")
    expect(cards.nth(3).locator("input[name=selected]")).to_be_checked()
    expect(page.locator(".selected-count")).to_have_text("1 selected")
    page.keyboard.press("v")
    expect(page.locator("dialog.side-by-side")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog.side-by-side")).to_be_hidden()

    db.expire_all()
    by_image = dict(db.execute(sa.select(Annotation.image_id, Annotation.status)).all())
    assert [by_image[i] for i in ids] == ["submitted", "accepted", "rejected", "submitted"]
    assert db.scalar(sa.select(Annotation.review_comment).where(Annotation.image_id == ids[2])) == (
        "too small"
    )


def test_side_by_side_shows_every_annotators_mask_with_pairwise_iou(page, client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    db.get(Dataset, seeded["dataset_id"]).annotators_per_image = 3
    db.commit()
    people = [auth["annotator"], add_annotator(db, client, "p1"), add_annotator(db, client, "p2")]
    bands = [(0, 32), (0, 16), (16, 48)]  # pairwise IoU 1/2, 1/3, 0
    for h, (y0, y1) in zip(people, bands, strict=True):
        m = np.zeros((SIZE, SIZE), bool)
        m[y0:y1] = True
        _submit(client, h, image_id, m)

    sign_in(page, "researcher")
    page.goto(f"/#/review?dataset={seeded['dataset_id']}")
    card = page.locator(".review-card").first
    expect(card.locator("button.compare")).to_contain_text("3 masks")
    card.locator("button.compare").click()
    dialog = page.locator("dialog.side-by-side")
    expect(dialog).to_be_visible()
    expect(dialog.locator(".sbs-item")).to_have_count(3)
    expect(dialog.locator(".sbs-item figcaption")).to_have_text(
        [re.compile(r"^annotator\b"), re.compile(r"^p1\b"), re.compile(r"^p2\b")]
    )
    # each preview is drawn at the image's own size
    for i in range(3):
        expect(dialog.locator("canvas.mask-preview").nth(i)).to_have_attribute("width", str(SIZE))
    rows = dialog.locator("table.iou-pairs tbody tr")
    expect(rows).to_have_count(3)
    got = {
        tuple(sorted(row[:2])): row[2]
        for row in (
            [c.strip() for c in rows.nth(i).locator("td").all_inner_texts()] for i in range(3)
        )
    }
    assert got == {("annotator", "p1"): "0.50", ("annotator", "p2"): "0.33", ("p1", "p2"): "0.00"}
    expect(dialog.locator(".mean-iou")).to_contain_text("0.28")
    dialog.get_by_role("button", name="Close").click()
    expect(dialog).to_be_hidden()


def _open_next(page, dataset_id):
    page.goto("/#/annotate")
    page.select_option("select[name=dataset]", str(dataset_id))
    page.get_by_role("button", name="Start annotating").click()
    expect(page).to_have_url(re.compile(r"#/annotate/\d+"))
    page.wait_for_selector(".mc-mask")
    return int(re.search(r"#/annotate/(\d+)", page.url).group(1))


def test_annotator_empty_warning_fitted_view_remembered_prefs_and_returned_flag(
    page, client, seeded, auth, db
):
    sign_in(page, "annotator")
    image_id = _open_next(page, seeded["dataset_id"])
    # fitted: the 64 px image fills the viewport's smaller side, not 64 px of it
    host = page.locator(".canvas-host").bounding_box()
    shown = page.locator(".mc-mask").bounding_box()
    assert max(shown["width"] / host["width"], shown["height"] / host["height"]) == (
        pytest.approx(1.0, abs=0.02)
    )

    # brush size and zoom are kept for this annotator across a reload
    page.locator("input[data-size=brush]").fill("7")
    page.locator("button[data-action=zoomIn]").click()
    zoom = page.locator(".zoom-val").inner_text()
    page.wait_for_timeout(400)
    page.reload()
    page.wait_for_selector(".mc-mask")
    expect(page.locator("input[data-size=brush]")).to_have_value("7")
    expect(page.locator(".zoom-val")).to_have_text(zoom)
    page.locator("button[data-action=fit]").click()

    # an empty mask: the page asks first; "Keep drawing" sends nothing
    page.get_by_role("button", name="Submit", exact=True).click()
    warning = page.locator(".small-mask-warning")
    expect(warning).to_be_visible()
    expect(warning).to_contain_text("The mask is empty")
    page.get_by_role("button", name="Keep drawing").click()
    expect(warning).to_be_hidden()
    db.expire_all()
    assert db.scalar(sa.select(Annotation.status).where(Annotation.image_id == image_id)) == "draft"
    page.get_by_role("button", name="Submit", exact=True).click()
    page.get_by_role("button", name="Submit anyway").click()
    page.wait_for_url(lambda url: f"#/annotate/{image_id}" not in url)
    db.expire_all()
    ann = db.scalar(sa.select(Annotation).where(Annotation.image_id == image_id))
    assert ann.status == "submitted"

    # the reviewer returns it: the home page flags it, and it opens first
    r = client.post(
        f"/api/reviews/{ann.id}",
        headers=auth["researcher"],
        json={"decision": "reject", "comment": "mark the animal"},
    )
    assert r.status_code == 200
    page.goto("/#/home")
    expect(page.locator(".returned-note")).to_contain_text("1 of your masks was returned")
    expect(page.locator(f"tr[data-dataset='{seeded['dataset_id']}'] .returned")).to_contain_text(
        "1 returned"
    )
    assert _open_next(page, seeded["dataset_id"]) == image_id
    expect(page.locator(".review-note")).to_contain_text("mark the animal")
