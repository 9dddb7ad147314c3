"""The annotator's API on PostgreSQL: saves and revisions, idempotent repeats (also concurrent),
every bad input refused with nothing changed, and the queue rules."""

from __future__ import annotations

import base64
import io
import threading
import uuid

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage

from backend.core.security import hash_password
from backend.models import Annotation, AnnotationRevision, Dataset, Skip, User
from backend.models import Image as ImageRow
from backend.services.masks import png_to_mask

SIZE = 64  # the seeded dataset's images are 64 x 64


def mask_png(mask: np.ndarray, mode: str = "L") -> bytes:
    grey = np.where(mask, 255, 0).astype(np.uint8)
    if mode == "L":
        img = PILImage.fromarray(grey, "L")
    elif mode == "1":
        img = PILImage.fromarray(mask.astype(bool)).convert("1")
    elif mode == "LA":
        img = PILImage.merge("LA", [PILImage.fromarray(255 - grey), PILImage.fromarray(grey)])
    elif mode == "RGBA":
        zero = PILImage.fromarray(np.zeros_like(grey))
        img = PILImage.merge("RGBA", [zero, zero, zero, PILImage.fromarray(grey)])
    else:
        raise ValueError(mode)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def square(x0=8, y0=8, size=16, shape=(SIZE, SIZE)) -> np.ndarray:
    m = np.zeros(shape, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


def body(mask: np.ndarray, save_id: str | None = None, active_ms: int = 1000, **kw) -> dict:
    return {
        "save_id": save_id or uuid.uuid4().hex,
        "mask_png_base64": base64.b64encode(kw.pop("png", None) or mask_png(mask)).decode(),
        "width": kw.pop("width", mask.shape[1]),
        "height": kw.pop("height", mask.shape[0]),
        "active_ms": active_ms,
    }


def put(client, headers, image_id, payload):
    return client.put(f"/api/annotate/images/{image_id}/mask", headers=headers, json=payload)


def counts(db) -> tuple[int, int, int]:
    db.expire_all()
    return (
        db.scalar(sa.select(sa.func.count()).select_from(Annotation)),
        db.scalar(sa.select(sa.func.count()).select_from(AnnotationRevision)),
        db.scalar(sa.select(sa.func.count()).select_from(Skip)),
    )


def add_annotator(db, client, name: str) -> dict:
    db.add(User(username=name, password_hash=hash_password("pw-" + name), role="annotator"))
    db.commit()
    r = client.post("/api/auth/login", json={"username": name, "password": "pw-" + name})
    assert r.status_code == 200, r.text
    return {"Authorization": f"Bearer {r.json()['access_token']}"}


def test_save_revise_and_read_back(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    h = auth["annotator"]
    first = square()
    r = put(client, h, image_id, body(first, "s1", active_ms=1500))
    assert r.status_code == 200, r.text
    saved = r.json()
    assert saved["revision"] == 1 and saved["status"] == "draft" and saved["saved_at"]
    second = square(20, 20, 30)
    r = put(client, h, image_id, body(second, "s2", active_ms=900))
    assert r.json()["revision"] == 2
    # revisions are kept, never overwritten; active time is the max seen
    revs = db.scalars(sa.select(AnnotationRevision).order_by(AnnotationRevision.revision)).all()
    assert [r.revision for r in revs] == [1, 2]
    assert np.array_equal(png_to_mask(revs[0].mask_bytes), first)
    assert np.array_equal(png_to_mask(revs[1].mask_bytes), second)
    assert revs[1].area == 900 and revs[1].active_ms == 900
    assert PILImage.open(io.BytesIO(revs[1].mask_bytes)).mode == "1"
    ann = db.scalar(sa.select(Annotation))
    assert ann.active_ms == 1500 and ann.latest_revision == 2
    got = client.get(f"/api/annotate/images/{image_id}", headers=h).json()
    assert got["annotation"]["revision"] == 2 and got["annotation"]["active_ms"] == 1500
    back = png_to_mask(base64.b64decode(got["annotation"]["mask_png_base64"]))
    assert np.array_equal(back, second)
    assert got["image"]["width"] == SIZE and got["image"]["file_url"].endswith("/file")
    assert got["image"]["class_name"] in ("cat", "dog")


@pytest.mark.parametrize("mode", ["L", "1", "LA", "RGBA"])
def test_every_png_mode_decodes_to_the_same_mask(client, seeded, auth, db, mode):
    m = square(3, 5, 20)
    r = put(client, auth["annotator"], seeded["image_ids"][0], body(m, png=mask_png(m, mode)))
    assert r.status_code == 200, r.text
    rev = db.scalar(sa.select(AnnotationRevision))
    assert np.array_equal(png_to_mask(rev.mask_bytes), m)


def test_repeated_save_id_is_idempotent(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    payload = body(square(), "same")
    a = put(client, auth["annotator"], image_id, payload).json()
    b = put(client, auth["annotator"], image_id, payload).json()
    assert a == b
    assert counts(db)[1] == 1


def test_concurrent_identical_save_ids_make_one_revision(live_server, seeded, db):
    import httpx

    image_id = seeded["image_ids"][1]
    headers = {"Authorization": login_live(live_server)}
    payloads = [body(square(i, i, 10), f"dup-{i % 4}") for i in range(16)]
    results: list = [None] * len(payloads)
    barrier = threading.Barrier(len(payloads))

    def go(i):
        with httpx.Client(base_url=live_server, headers=headers, timeout=30) as c:
            barrier.wait()
            results[i] = c.put(f"/api/annotate/images/{image_id}/mask", json=payloads[i])

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(payloads))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.status_code == 200 for r in results), [r.text for r in results]
    by_save = {}
    for p, r in zip(payloads, results, strict=True):
        by_save.setdefault(p["save_id"], set()).add(r.json()["revision"])
    # each save_id got exactly one revision number, and the four are 1..4
    assert all(len(v) == 1 for v in by_save.values())
    assert sorted(next(iter(v)) for v in by_save.values()) == [1, 2, 3, 4]
    assert counts(db)[1] == 4


def login_live(base: str) -> str:
    import httpx

    r = httpx.post(
        base + "/api/auth/login", json={"username": "annotator", "password": "annotator-pass"}
    )
    assert r.status_code == 200, r.text
    return "Bearer " + r.json()["access_token"]


def _grey_png(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(values.astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


BAD = {
    "size differs from the image": (lambda: body(square(shape=(32, 32))), 422, "image is 64x64"),
    "declared size differs from the PNG": (
        lambda: body(square(), width=64, height=64, png=mask_png(square(shape=(64, 32)))),
        422,
        "not the declared",
    ),
    "not binary": (
        lambda: body(square(), png=_grey_png(np.full((SIZE, SIZE), 128))),
        422,
        "not binary",
    ),
    "not a PNG": (
        lambda: body(square(), png=b"\x89PNG\r\n\x1a\n garbage"),
        422,
        "could not be decoded",
    ),
    "a JPEG": (lambda: body(square(), png=_jpeg()), 422, "not a PNG"),
    "not base64": (lambda: {**body(square()), "mask_png_base64": "***"}, 422, "not valid base64"),
    "no save_id": (
        lambda: {k: v for k, v in body(square()).items() if k != "save_id"},
        422,
        "save_id",
    ),
    "negative active time": (lambda: body(square(), active_ms=-5), 422, "active_ms"),
}


def _jpeg() -> bytes:
    buf = io.BytesIO()
    PILImage.new("L", (SIZE, SIZE)).save(buf, "JPEG")
    return buf.getvalue()


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_masks_are_refused_and_nothing_changes(client, seeded, auth, db, case):
    image_id = seeded["image_ids"][0]
    assert put(client, auth["annotator"], image_id, body(square(), "keep")).status_code == 200
    before = counts(db)
    make, status, words = BAD[case]
    r = put(client, auth["annotator"], image_id, make())
    assert r.status_code == status, r.text
    assert words in r.json()["detail"] and r.json()["detail"].endswith(".")
    assert counts(db) == before


def test_oversize_body_is_refused_before_reading(client, seeded, auth, db):
    from backend.core.config import get_settings

    limit = get_settings().max_mask_bytes
    payload = body(square())
    payload["mask_png_base64"] = "A" * (limit + 10)
    r = put(client, auth["annotator"], seeded["image_ids"][0], payload)
    assert r.status_code == 413
    assert r.json()["detail"] == "The mask is larger than the allowed size."
    assert counts(db) == (0, 0, 0)


def test_roles_and_unknown_image(client, seeded, auth, db):
    for role in ("researcher", "admin"):
        r = put(client, auth[role], seeded["image_ids"][0], body(square()))
        assert r.status_code == 403
    r = put(client, auth["annotator"], 999999, body(square()))
    assert r.status_code == 404
    assert r.json()["detail"] == "Image not found among the datasets open to you."
    assert counts(db) == (0, 0, 0)


def test_someone_elses_full_image_and_accepted_mask_are_refused(client, seeded, auth, db):
    """An image whose slots are taken by others, and a mask already accepted, cannot change."""
    image_id = seeded["image_ids"][0]
    other = add_annotator(db, client, "other")
    assert put(client, other, image_id, body(square())).status_code == 200
    before = counts(db)
    r = put(client, auth["annotator"], image_id, body(square()))
    assert r.status_code == 409 and "enough masks" in r.json()["detail"]
    assert counts(db) == before
    # accepted: the other's mask is final
    client.post(f"/api/annotate/images/{image_id}/submit", headers=other)
    ann = db.scalar(sa.select(Annotation))
    r = client.post(
        f"/api/reviews/{ann.id}", headers=auth["researcher"], json={"decision": "accept"}
    )
    assert r.status_code == 200, r.text
    r = put(client, other, image_id, body(square(1, 1, 3)))
    assert r.status_code == 409 and "accepted" in r.json()["detail"]
    assert counts(db) == before


def test_submit_rules(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    h = auth["annotator"]
    r = client.post(f"/api/annotate/images/{image_id}/submit", headers=h)
    assert r.status_code == 409 and "no saved mask" in r.json()["detail"]
    put(client, h, image_id, body(square(), "a"))
    r = client.post(
        f"/api/annotate/images/{image_id}/submit",
        headers=h,
        json={"save_id_of_last_save": "not-yet"},
    )
    assert r.status_code == 409 and "not reached" in r.json()["detail"]
    r = client.post(
        f"/api/annotate/images/{image_id}/submit", headers=h, json={"save_id_of_last_save": "a"}
    )
    assert r.status_code == 200 and r.json() == {"status": "submitted"}
    # a save after submitting (not reviewed yet) is allowed and returns it to draft
    r = put(client, h, image_id, body(square(2, 2, 5), "b"))
    assert r.status_code == 200 and r.json()["status"] == "draft" and r.json()["revision"] == 2
    # the old save repeated late does not change anything
    r = put(client, h, image_id, body(square(), "a"))
    assert r.json()["revision"] == 1 and counts(db)[1] == 2


def _next(client, h, dataset_id=None):
    params = {"dataset_id": dataset_id} if dataset_id else {}
    return client.get("/api/annotate/next", headers=h, params=params)


def _finish(client, h, image_id, sid=None):
    assert put(client, h, image_id, body(square(), sid)).status_code == 200
    assert client.post(f"/api/annotate/images/{image_id}/submit", headers=h).status_code == 200


def test_queue_gives_each_image_once_and_respects_annotators_per_image(client, seeded, auth, db):
    dataset = db.get(Dataset, seeded["dataset_id"])
    dataset.annotators_per_image = 2
    db.commit()
    n_images = len(seeded["image_ids"])
    a = auth["annotator"]
    b = add_annotator(db, client, "b")
    c = add_annotator(db, client, "c")
    lists = client.get("/api/annotate/datasets", headers=a).json()["data"]
    assert lists == [{"id": dataset.id, "name": "tiny", "remaining": n_images}]
    seen_a = []
    while (r := _next(client, a, dataset.id)).status_code == 200:
        item = r.json()
        assert item["remaining"] == n_images - len(seen_a)
        assert item["annotation"] is None  # claimed for a, but nothing saved yet
        # asking again before finishing resumes the same image
        assert _next(client, a).json()["image"]["id"] == item["image"]["id"]
        seen_a.append(item["image"]["id"])
        _finish(client, a, item["image"]["id"])
    assert r.status_code == 204 and sorted(seen_a) == sorted(seeded["image_ids"])
    assert client.get("/api/annotate/datasets", headers=a).json()["data"] == []
    # b skips the first image offered, then annotates the rest
    first = _next(client, b).json()["image"]["id"]
    r = client.post(f"/api/annotate/images/{first}/skip", headers=b, json={"reason": "blurry"})
    assert r.status_code == 204
    seen_b = []
    while (r := _next(client, b)).status_code == 200:
        seen_b.append(r.json()["image"]["id"])
        _finish(client, b, seen_b[-1])
    assert first not in seen_b and len(seen_b) == n_images - 1
    # c can only get the image b skipped: every other one has its two masks
    assert _next(client, c).json()["image"]["id"] == first
    _finish(client, c, first)
    assert _next(client, c).status_code == 204


def test_rejected_mask_returns_first_and_skip_needs_a_reason(client, seeded, auth, db):
    a = auth["annotator"]
    ids = seeded["image_ids"]
    r = client.post(f"/api/annotate/images/{ids[0]}/skip", headers=a, json={"reason": "  "})
    assert r.status_code == 422
    assert counts(db) == (0, 0, 0)
    first = _next(client, a).json()["image"]["id"]
    _finish(client, a, first)
    second = _next(client, a).json()["image"]["id"]
    assert second != first
    ann = db.scalar(sa.select(Annotation).where(Annotation.image_id == first))
    r = client.post(
        f"/api/reviews/{ann.id}",
        headers=auth["researcher"],
        json={"decision": "reject", "comment": "too coarse"},
    )
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    item = _next(client, a).json()
    assert item["image"]["id"] == first
    assert item["annotation"]["status"] == "rejected"
    assert item["annotation"]["review_comment"] == "too coarse"
    # the redo is a new revision, back to draft
    r = put(client, a, first, body(square(1, 1, 4)))
    assert r.json()["revision"] == 2 and r.json()["status"] == "draft"


def test_two_annotators_do_not_take_the_last_slot_together(live_server, seeded, db):
    """annotators_per_image = 1 and one image: of many simultaneous /next, one wins."""
    import httpx

    dataset = db.get(Dataset, seeded["dataset_id"])
    db.execute(sa.delete(ImageRow).where(ImageRow.id != seeded["image_ids"][0]))
    db.commit()
    tokens = []
    for i in range(8):
        name = f"racer{i}"
        db.add(User(username=name, password_hash=hash_password("pw"), role="annotator"))
        db.commit()
        r = httpx.post(live_server + "/api/auth/login", json={"username": name, "password": "pw"})
        tokens.append("Bearer " + r.json()["access_token"])
    barrier = threading.Barrier(len(tokens))
    statuses: list = [None] * len(tokens)

    def go(i):
        with httpx.Client(base_url=live_server, timeout=30) as c:
            barrier.wait()
            statuses[i] = c.get(
                "/api/annotate/next",
                params={"dataset_id": dataset.id},
                headers={"Authorization": tokens[i]},
            ).status_code

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(tokens))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200] + [204] * (len(tokens) - 1)


def test_skip_after_saving_keeps_the_drawing_and_frees_the_slot(client, seeded, auth, db):
    image_id = _next(client, auth["annotator"]).json()["image"]["id"]
    assert put(client, auth["annotator"], image_id, body(square(), "drawn")).status_code == 200
    r = client.post(
        f"/api/annotate/images/{image_id}/skip",
        headers=auth["annotator"],
        json={"reason": "two objects"},
    )
    assert r.status_code == 204, r.text
    assert counts(db) == (1, 1, 1)  # the revision is kept
    assert _next(client, auth["annotator"]).json()["image"]["id"] != image_id
    other = add_annotator(db, client, "other")
    seen = []
    while (r := _next(client, other)).status_code == 200:
        seen.append(r.json()["image"]["id"])
        _finish(client, other, seen[-1])
    assert image_id in seen  # annotators_per_image = 1, and the skipped draft holds no slot
