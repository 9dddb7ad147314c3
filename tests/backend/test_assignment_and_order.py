"""Queues and review at scale, on PostgreSQL: per-dataset annotator assignment (an unassigned
annotator neither sees the dataset nor gets, opens, saves, submits or skips its images), the
queue's shuffled order per annotator (not class order, stable, different per annotator,
every image reachable), returned masks first and counted, empty and tiny masks (refused
without a confirmation, flagged in review, left out of a frozen set and said so), keyset
pagination of the review list, bulk review and one image's masks side by side."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import sqlalchemy as sa

from backend.models import Annotation, Dataset, DatasetAssignment, Skip
from backend.models import Image as ImageRow
from tests.conftest import make_png, make_zip

from .test_annotation import add_annotator, body, put, square

SIZE = 64
IMAGE_NOT_OPEN = "Image not found among the datasets open to you."
DATASET_NOT_OPEN = (
    "Dataset not found among the datasets open to you; a researcher can assign you to it."
)


def _import(client, auth, name: str, per_class: int, classes=("cat", "dog", "owl")) -> dict:
    """A dataset whose images are imported class by class (so ids follow the classes)."""
    files = {}
    for c, cls in enumerate(classes):
        for i in range(per_class):
            files[f"{cls}/{i:03d}.png"] = make_png(SIZE, SIZE, (40 * c + 20, 5 * i, 90))
    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": name, "test_fraction": "0"},
        files={"file": (f"{name}.zip", make_zip(files), "application/zip")},
    )
    assert r.status_code == 201, r.text
    ds = r.json()
    images = client.get(
        f"/api/datasets/{ds['id']}/images", headers=auth["researcher"], params={"limit": 500}
    ).json()["data"]
    return {
        "id": ds["id"],
        "images": images,
        "class_of": {i["id"]: i["class_name"] for i in images},
    }


def _next(client, h, dataset_id=None):
    params = {"dataset_id": dataset_id} if dataset_id else {}
    return client.get("/api/annotate/next", headers=h, params=params)


def _order_by_skipping(client, h, dataset_id) -> list[int]:
    """The annotator's whole queue, read by taking and skipping each image in turn (a skip
    drops the claim, so it changes nobody else's queue)."""
    seen = []
    while (r := _next(client, h, dataset_id)).status_code == 200:
        image_id = r.json()["image"]["id"]
        assert image_id not in seen, "an image came twice"
        seen.append(image_id)
        s = client.post(f"/api/annotate/images/{image_id}/skip", headers=h, json={"reason": "x"})
        assert s.status_code == 204, s.text
    assert r.status_code == 204
    return seen


def _finish(client, h, image_id, mask=None, **submit):
    assert put(client, h, image_id, body(square() if mask is None else mask)).status_code == 200
    r = client.post(f"/api/annotate/images/{image_id}/submit", headers=h, json=submit)
    assert r.status_code == 200, r.text
    return r.json()


# ---------------------------------------------------------------------------- assignment


def test_unassigned_annotator_neither_sees_the_dataset_nor_gets_its_images(
    client, seeded, auth, db
):
    ds = seeded["dataset_id"]
    image_id = seeded["image_ids"][0]
    a = auth["annotator"]
    b = add_annotator(db, client, "bea")
    r = client.get(f"/api/datasets/{ds}/assignments", headers=auth["researcher"])
    assert r.status_code == 200
    listing = r.json()
    assert listing["open_to_all"] is True and listing["assigned_user_ids"] == []
    names = {p["username"]: p for p in listing["annotators"]}
    assert set(names) == {"annotator", "bea"} and not any(p["assigned"] for p in names.values())
    bea_id = names["bea"]["id"]
    # open to all: both see it
    assert [d["id"] for d in client.get("/api/annotate/datasets", headers=a).json()["data"]] == [ds]

    # a researcher cannot assign a non-annotator (and nothing changes)
    r = client.put(
        f"/api/datasets/{ds}/assignments",
        headers=auth["researcher"],
        json={"user_ids": [bea_id, seeded["users"]["researcher"]]},
    )
    assert r.status_code == 422 and "Only active annotators" in r.json()["detail"]
    assert db.scalar(sa.select(sa.func.count()).select_from(DatasetAssignment)) == 0

    r = client.put(
        f"/api/datasets/{ds}/assignments", headers=auth["researcher"], json={"user_ids": [bea_id]}
    )
    assert r.status_code == 200, r.text
    assert r.json()["open_to_all"] is False and r.json()["assigned_user_ids"] == [bea_id]

    # the unassigned annotator: no dataset, no image (not even its file), and on every route
    # the very answer a missing id gets, so that ids tell nothing
    assert client.get("/api/annotate/datasets", headers=a).json()["data"] == []
    assert _next(client, a).status_code == 204
    missing_image = max(seeded["image_ids"]) + 1000
    for image in (image_id, missing_image):
        for r in (
            client.get(f"/api/annotate/images/{image}", headers=a),
            put(client, a, image, body(square())),
            client.post(f"/api/annotate/images/{image}/submit", headers=a),
            client.post(f"/api/annotate/images/{image}/skip", headers=a, json={"reason": "x"}),
            client.get(f"/api/images/{image}/file", headers=a),
        ):
            assert r.status_code == 404, (image, r.request.url, r.text)
            assert r.json()["detail"] == IMAGE_NOT_OPEN, r.request.url
    for dataset in (ds, ds + 1000):
        r = _next(client, a, dataset)
        assert r.status_code == 404 and r.json()["detail"] == DATASET_NOT_OPEN, r.text
        # a researcher's route answers an annotator 403 whether the id exists or not
        for url in (f"/api/datasets/{dataset}", f"/api/datasets/{dataset}/masks/export"):
            r = client.get(url, headers=a)
            assert r.status_code == 403, (url, r.text)
    # the assigned annotator gets the file; so do researchers
    assert client.get(f"/api/images/{image_id}/file", headers=b).status_code == 200
    assert client.get(f"/api/images/{image_id}/file", headers=auth["researcher"]).status_code == 200
    assert db.scalar(sa.select(sa.func.count()).select_from(Annotation)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(Skip)) == 0

    # the assigned one works as before
    assert [d["id"] for d in client.get("/api/annotate/datasets", headers=b).json()["data"]] == [ds]
    got = _next(client, b, ds)
    assert got.status_code == 200 and got.json()["image"]["dataset_id"] == ds

    # a draft made while open stays hidden once the dataset is assigned to others, and
    # comes back when the dataset is opened again
    r = client.put(
        f"/api/datasets/{ds}/assignments", headers=auth["researcher"], json={"user_ids": []}
    )
    assert r.status_code == 200 and r.json()["open_to_all"] is True
    assert _next(client, a, ds).status_code == 200


def test_assignment_routes_refuse_bad_input_with_a_sentence(client, seeded, auth):
    ds = seeded["dataset_id"]
    h = auth["researcher"]
    r = client.put(f"/api/datasets/{ds}/assignments", headers=h, json={"user_ids": [999_999]})
    assert r.status_code == 422 and "999999" in r.json()["detail"]
    r = client.put(f"/api/datasets/{ds}/assignments", headers=h, json={"user_ids": [0]})
    assert r.status_code == 422 and r.json()["detail"]
    r = client.get("/api/datasets/999999/assignments", headers=h)
    assert r.status_code == 404 and r.json()["detail"]
    r = client.get(f"/api/datasets/{ds}/assignments", headers=auth["annotator"])
    assert r.status_code == 403


# ---------------------------------------------------------------------------- queue order


def _class_runs(order: list[int], class_of: dict[int, str]) -> int:
    return 1 + sum(class_of[x] != class_of[y] for x, y in itertools.pairwise(order))


def test_queue_order_is_shuffled_per_annotator_stable_and_complete(client, users, auth, db):
    world = _import(client, auth, "digits", per_class=12)
    ds, class_of = world["id"], world["class_of"]
    all_ids = sorted(class_of)
    a = auth["annotator"]
    b = add_annotator(db, client, "bob")

    order_a = _order_by_skipping(client, a, ds)
    order_b = _order_by_skipping(client, b, ds)
    # every image reachable, once
    assert sorted(order_a) == all_ids and sorted(order_b) == all_ids
    # not by id, not by class: the first dozen mixes the classes, and the order changes
    # class far more often than class-by-class (3 runs) would
    assert order_a != all_ids and order_b != all_ids
    assert len({class_of[i] for i in order_a[:12]}) == 3
    assert _class_runs(order_a, class_of) > 12 and _class_runs(order_b, class_of) > 12
    # different between annotators
    assert order_a != order_b
    assert sum(x == y for x, y in zip(order_a, order_b, strict=True)) < len(all_ids) // 3

    # stable across requests: forget a's skips, read the queue again
    db.execute(sa.delete(Skip).where(Skip.annotator_id == users["annotator"].id))
    db.commit()
    assert _order_by_skipping(client, a, ds) == order_a
    # and asking twice without acting gives the same image (the claim)
    db.execute(sa.delete(Skip).where(Skip.annotator_id == users["annotator"].id))
    db.commit()
    first = _next(client, a, ds).json()["image"]["id"]
    assert first == order_a[0] and _next(client, a, ds).json()["image"]["id"] == first


def test_queue_shuffle_is_computed_in_sql_without_overflow(db, seeded, users):
    """The shuffle is an SQL expression (the database orders, not Python) and stays in range
    for ids at the top of a 32-bit integer."""
    from backend.services.masks.queue import _PRIME, queue_order_key

    top = 2**31 - 1
    db.execute(sa.update(ImageRow).where(ImageRow.id == seeded["image_ids"][0]).values(id=top))
    db.commit()
    key = queue_order_key(users["annotator"])
    assert "images.id" in str(sa.select(key).compile(dialect=db.get_bind().dialect))
    values = db.scalars(sa.select(key).order_by(ImageRow.id)).all()
    assert len(values) == len(seeded["image_ids"])
    assert all(0 <= v < _PRIME for v in values)
    assert len(set(values)) == len(values)


def test_images_short_of_annotators_still_come_first(client, users, auth, db):
    world = _import(client, auth, "pairs", per_class=4)
    ds = world["id"]
    dataset = db.get(Dataset, ds)
    dataset.annotators_per_image = 2
    db.commit()
    a = auth["annotator"]
    b = add_annotator(db, client, "ben")
    started = _next(client, a, ds).json()["image"]["id"]
    _finish(client, a, started)
    # b's first image is the one a started (it finishes an image), whatever b's shuffle says
    assert _next(client, b, ds).json()["image"]["id"] == started


# ---------------------------------------------------------------------------- returned masks


def test_returned_mask_is_counted_and_first_in_the_queue(client, seeded, auth, db):
    a = auth["annotator"]
    ds = seeded["dataset_id"]
    done = []
    for _ in range(3):
        image_id = _next(client, a, ds).json()["image"]["id"]
        _finish(client, a, image_id)
        done.append(image_id)
    open_claim = _next(client, a, ds).json()["image"]["id"]  # a draft claim of a's
    assert open_claim not in done
    assert "returned" not in client.get("/api/annotate/datasets", headers=a).json()["data"][0]
    ann = db.scalar(sa.select(Annotation).where(Annotation.image_id == done[1]))
    r = client.post(
        f"/api/reviews/{ann.id}",
        headers=auth["researcher"],
        json={"decision": "reject", "comment": "cover the ears"},
    )
    assert r.status_code == 200
    row = client.get("/api/annotate/datasets", headers=a).json()["data"][0]
    assert row["returned"] == 1
    # first: before a's own open draft, with the reviewer's comment
    item = _next(client, a, ds).json()
    assert item["image"]["id"] == done[1]
    assert item["annotation"]["status"] == "rejected"
    assert item["annotation"]["review_comment"] == "cover the ears"
    # also first in the queue of all datasets
    assert _next(client, a).json()["image"]["id"] == done[1]
    # redone and submitted: no longer returned, and the draft claim comes next
    _finish(client, a, done[1])
    assert "returned" not in client.get("/api/annotate/datasets", headers=a).json()["data"][0]
    assert _next(client, a, ds).json()["image"]["id"] == open_claim


# ---------------------------------------------------------------------------- empty masks


def test_empty_mask_needs_confirmation_is_flagged_and_left_out_of_a_frozen_set(
    client, seeded, auth, db
):
    a = auth["annotator"]
    ids = seeded["image_ids"]
    empty = np.zeros((SIZE, SIZE), bool)
    assert put(client, a, ids[0], body(empty)).status_code == 200
    r = client.post(f"/api/annotate/images/{ids[0]}/submit", headers=a)
    assert r.status_code == 409 and "The mask is empty" in r.json()["detail"]
    status = db.scalar(sa.select(Annotation.status).where(Annotation.image_id == ids[0]))
    assert status == "draft"
    r = client.post(
        f"/api/annotate/images/{ids[0]}/submit", headers=a, json={"confirm_empty": True}
    )
    assert r.status_code == 200 and r.json() == {"status": "submitted", "flags": ["empty"]}

    tiny = square(3, 3, 3)  # 9 of 4096 pixels
    assert _finish(client, a, ids[1], tiny) == {"status": "submitted", "flags": ["tiny"]}
    assert _finish(client, a, ids[2]) == {"status": "submitted"}

    queue = client.get(
        "/api/reviews", headers=auth["researcher"], params={"dataset_id": seeded["dataset_id"]}
    ).json()
    flags = {item["image_id"]: item["flags"] for item in queue["data"]}
    assert flags == {ids[0]: ["empty"], ids[1]: ["tiny"], ids[2]: []}

    r = client.post(
        "/api/reviews/bulk",
        headers=auth["researcher"],
        json={"annotation_ids": [i["annotation_id"] for i in queue["data"]], "decision": "accept"},
    )
    assert r.status_code == 200 and len(r.json()["data"]) == 3
    r = client.post(
        f"/api/datasets/{seeded['dataset_id']}/mask-sets",
        headers=auth["researcher"],
        json={"name": "with an empty one"},
    )
    assert r.status_code == 201, r.text
    frozen = r.json()
    assert frozen["num_images"] == 2 and frozen["filter"]["empty_masks_excluded"] == 1
    items = client.get(f"/api/mask-sets/{frozen['id']}", headers=auth["researcher"]).json()
    assert sorted(i["image_id"] for i in items["items"]) == sorted([ids[1], ids[2]])
    # nothing passes two annotators per image: the refusal counts the one empty mask in the
    # singular
    r = client.post(
        f"/api/datasets/{seeded['dataset_id']}/mask-sets",
        headers=auth["researcher"],
        json={"name": "two each", "min_annotators": 2},
    )
    assert r.status_code == 422, r.text
    assert "(1 empty mask was left out)" in r.json()["detail"], r.text


# ---------------------------------------------------------------------------- review at scale


def test_review_pages_by_cursor_never_skip_when_masks_leave_the_list(client, users, auth, db):
    world = _import(client, auth, "thirty", per_class=10)
    a = auth["annotator"]
    ids = [i["id"] for i in world["images"]]
    assert len(ids) == 30
    for image_id in ids:
        _finish(client, a, image_id)
    h = auth["researcher"]
    params = {"dataset_id": world["id"], "limit": 24}
    page1 = client.get("/api/reviews", headers=h, params=params).json()
    assert page1["count"] == 30 and len(page1["data"]) == 24 and page1["next_cursor"]
    r = client.post(
        "/api/reviews/bulk",
        headers=h,
        json={"annotation_ids": [i["annotation_id"] for i in page1["data"]], "decision": "accept"},
    )
    assert r.status_code == 200 and r.json()["skipped"] == []
    page2 = client.get(
        "/api/reviews", headers=h, params={**params, "cursor": page1["next_cursor"]}
    ).json()
    assert page2["count"] == 6 and len(page2["data"]) == 6 and page2["next_cursor"] is None
    seen = {i["image_id"] for i in page1["data"]} | {i["image_id"] for i in page2["data"]}
    assert seen == set(ids)
    r = client.get("/api/reviews", headers=h, params={"cursor": "not-a-cursor"})
    assert r.status_code == 422 and r.json()["detail"]
    # a cursor past the end: an empty last page, the full count
    r = client.get("/api/reviews", headers=h, params={"cursor": "99999999999999999.1"})
    assert r.status_code == 200
    assert r.json() == {"data": [], "count": 6, "next_cursor": None}


def test_bulk_review_rules(client, seeded, auth, db):
    a = auth["annotator"]
    ids = seeded["image_ids"]
    for image_id in ids[:3]:
        _finish(client, a, image_id)
    draft = _next(client, a).json()["image"]["id"]
    put(client, a, draft, body(square()))
    anns = {
        x.image_id: x.id for x in db.scalars(sa.select(Annotation).order_by(Annotation.id)).all()
    }
    h = auth["researcher"]
    chosen = [anns[ids[0]], anns[ids[1]]]
    r = client.post(
        "/api/reviews/bulk", headers=h, json={"annotation_ids": chosen, "decision": "reject"}
    )
    assert r.status_code == 422 and "Say why" in r.json()["detail"]
    assert set(db.scalars(sa.select(Annotation.status)).all()) == {"submitted", "draft"}
    r = client.post(
        "/api/reviews/bulk",
        headers=h,
        json={
            "annotation_ids": [*chosen, anns[draft], 999_999, chosen[0]],
            "decision": "reject",
            "comment": "too coarse",
        },
    )
    assert r.status_code == 200, r.text
    out = r.json()
    assert sorted(x["annotation_id"] for x in out["data"]) == sorted(chosen)
    assert all(
        x["status"] == "rejected" and x["review_comment"] == "too coarse" for x in out["data"]
    )
    assert {s["annotation_id"]: s["reason"] for s in out["skipped"]} == {
        anns[draft]: "Only a submitted mask can be reviewed.",
        999_999: "Annotation not found.",
    }
    db.expire_all()
    assert db.get(Annotation, anns[ids[2]]).status == "submitted"
    for bad in (
        {"annotation_ids": [], "decision": "accept"},
        {"annotation_ids": [1], "decision": "maybe"},
    ):
        r = client.post("/api/reviews/bulk", headers=h, json=bad)
        assert r.status_code == 422 and r.json()["detail"]


def test_side_by_side_masks_of_one_image_with_pairwise_iou(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    people = [auth["annotator"], add_annotator(db, client, "p1"), add_annotator(db, client, "p2")]
    db.get(Dataset, seeded["dataset_id"]).annotators_per_image = 3
    db.commit()
    masks = [np.zeros((SIZE, SIZE), bool) for _ in range(3)]
    masks[0][0:32] = True
    masks[1][0:16] = True
    masks[2][16:48] = True
    for h, m in zip(people, masks, strict=True):
        _finish(client, h, image_id, m)
    r = client.get(f"/api/reviews/images/{image_id}", headers=auth["researcher"])
    assert r.status_code == 200, r.text
    out = r.json()
    assert [m["annotator"] for m in out["masks"]] == ["annotator", "p1", "p2"]
    by_ann = {m["annotation_id"]: i for i, m in enumerate(out["masks"])}
    expected = {(0, 1): 0.5, (0, 2): 1 / 3, (1, 2): 0.0}
    got = {tuple(sorted((by_ann[p["a"]], by_ann[p["b"]]))): p["iou"] for p in out["pairs"]}
    assert got.keys() == expected.keys()
    for k, v in expected.items():
        assert got[k] == pytest.approx(v)
    assert out["mean_pairwise_iou"] == pytest.approx(5 / 18)
    queue = client.get("/api/reviews", headers=auth["researcher"]).json()["data"]
    assert {i["num_masks_of_image"] for i in queue} == {3}
    r = client.get("/api/reviews/images/999999", headers=auth["researcher"])
    assert r.status_code == 404 and r.json()["detail"]


def test_image_ids_follow_classes_in_the_fixture(client, users, auth, db):
    """The premise of the order test: imported ids run class by class."""
    world = _import(client, auth, "premise", per_class=3)
    by_id = [world["class_of"][i] for i in sorted(world["class_of"])]
    assert by_id == sorted(by_id)
    assert db.scalar(sa.select(sa.func.count()).select_from(ImageRow)) == 9
