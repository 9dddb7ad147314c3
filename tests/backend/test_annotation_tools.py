"""The drawing aids of issue 28 on the server: every revision keeps its provenance (the share of
its pixels each tool contributed, the proposal it started from) and bad provenance is refused
with a sentence; superpixels are computed once and kept in the store; GrabCut finds a clear
object from a box or a rough mask; proposals are off until a researcher turns them on; the
review queue shows each mask's provenance, the agreement splits by it, and a freeze can leave
proposal-seeded masks out."""

from __future__ import annotations

import base64
import io
import json
import zlib

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage
from scipy import ndimage

from backend.core.storage import get_storage
from backend.models import Annotation, AnnotationRevision, MaskSet, TrainingRun
from backend.services.masks import png_to_mask
from backend.services.runs import run_out_key
from tests.conftest import make_zip

from .test_annotation import body, counts, mask_png, put, square
from .test_masks import drawn  # noqa: F401 - the fixture of hand-made masks


def test_provenance_is_recorded_per_revision_and_read_back(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    h = auth["annotator"]
    payload = body(square(), "p1") | {"provenance": {"drawn": 0.25, "wand": 0.75}}
    assert put(client, h, image_id, payload).status_code == 200
    payload = body(square(4, 4, 30), "p2") | {
        "provenance": {"superpixels": 0.5, "proposal": 0.3, "refined": 0.2, "wand": 0.0},
        "proposal_source": "saliency",
    }
    assert put(client, h, image_id, payload).status_code == 200
    # an empty mask has no shares whatever the client says; an old client's save says nothing
    empty = square(0, 0, 0)
    assert put(client, h, image_id, body(empty, "p3") | {"provenance": {}}).status_code == 200
    assert put(client, h, image_id, body(square(), "p4")).status_code == 200
    revs = db.scalars(sa.select(AnnotationRevision).order_by(AnnotationRevision.revision)).all()
    assert [(r.provenance, r.proposal_source) for r in revs] == [
        ({"drawn": 0.25, "wand": 0.75}, None),
        ({"superpixels": 0.5, "proposal": 0.3, "refined": 0.2}, "saliency"),
        ({}, None),
        (None, None),
    ]
    put(client, h, image_id, body(square(), "p5") | {"provenance": {"wand": 1.0}})
    got = client.get(f"/api/annotate/images/{image_id}", headers=h).json()["annotation"]
    assert got["provenance"] == {"wand": 1.0} and got["proposal_source"] is None


BAD_PROVENANCE = {
    "unknown tool": ({"pen": 1.0}, None, "the provenance names pen"),
    "share above 1": ({"drawn": 1.5}, None, "share of drawn must be between 0 and 1"),
    "negative share": ({"drawn": 1.0, "wand": -0.2}, None, "share of wand must be between"),
    "shares not adding up": ({"drawn": 0.5, "wand": 0.2}, None, "add up to 0.700, not 1"),
    "no tool for a drawn mask": ({}, None, "its provenance names no tool"),
    "proposal without a source": ({"proposal": 1.0}, None, "must name the proposal's source"),
    "unknown source": ({"drawn": 1.0}, "sam", 'must be "saliency" or "run:"'),
    "not a number": ({"drawn": "all"}, None, "valid number"),
}


def test_bad_provenance_is_refused_with_a_sentence(client, seeded, auth, db):
    image_id = seeded["image_ids"][0]
    before = counts(db)
    for case, (provenance, source, words) in BAD_PROVENANCE.items():
        payload = body(square(), "bad") | {"provenance": provenance, "proposal_source": source}
        r = put(client, auth["annotator"], image_id, payload)
        assert r.status_code == 422, (case, r.text)
        assert words in r.json()["detail"], (case, r.json())
    assert counts(db) == before


# ---------------------------------------------------------------------------- server aids

W, H = 64, 48


def object_image() -> tuple[np.ndarray, np.ndarray]:
    """An ellipse of one colour on a background of another, each pixel off by up to 8."""
    y, x = np.mgrid[0:H, 0:W]
    ellipse = ((x - 34) / 18) ** 2 + ((y - 22) / 12) ** 2 <= 1
    rng = np.random.default_rng(28)
    rgb = np.where(ellipse[..., None], (200, 60, 40), (40, 90, 150)) + rng.integers(
        -8, 9, (H, W, 3)
    )
    return rgb.astype(np.uint8), ellipse


@pytest.fixture()
def bird(client, auth, seeded):
    """A dataset of one object image; its id and the image's, and the object's mask."""
    rgb, ellipse = object_image()
    buf = io.BytesIO()
    PILImage.fromarray(rgb).save(buf, "PNG")
    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": "bird"},
        files={"file": ("b.zip", make_zip({"bird/o.png": buf.getvalue()}), "application/zip")},
    )
    assert r.status_code == 201, r.text
    dataset_id = r.json()["id"]
    images = client.get(f"/api/datasets/{dataset_id}/images", headers=auth["researcher"])
    return dataset_id, images.json()["data"][0]["id"], ellipse


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_superpixels_are_computed_once_and_kept_in_the_store(client, auth, bird):
    _, image_id, _ = bird
    url = f"/api/annotate/images/{image_id}/superpixels"
    first = client.get(url, params={"size": "small"}, headers=auth["annotator"]).json()
    labels = np.frombuffer(zlib.decompress(base64.b64decode(first["labels"])), "<u2")
    assert labels.size == W * H and first["count"] == labels.max() + 1
    assert set(np.unique(labels)) == set(range(first["count"]))  # numbered 0..count-1
    keys = get_storage().keys("derived/superpixels")
    assert len(keys) == 1 and keys[0].endswith("/small.bin")
    assert client.get(url, params={"size": "small"}, headers=auth["annotator"]).json() == first
    sizes = {
        s: client.get(url, params={"size": s}, headers=auth["annotator"]).json()["count"]
        for s in ("small", "medium", "large")
    }
    # (on this 48 px image small and medium both reach the 2 px floor)
    assert sizes["small"] >= sizes["medium"] > sizes["large"] >= 1
    r = client.get(url, params={"size": "huge"}, headers=auth["annotator"])
    assert r.status_code == 422 and "no superpixel size 'huge'" in r.json()["detail"]


def test_refine_finds_the_object_from_a_box_or_a_rough_mask(client, auth, bird):
    _, image_id, ellipse = bird
    url = f"/api/annotate/images/{image_id}/refine"
    r = client.post(url, json={"box": [12, 6, 58, 40]}, headers=auth["annotator"])
    assert r.status_code == 200, r.text
    from_box = png_to_mask(base64.b64decode(r.json()["mask_png_base64"]))
    assert _iou(from_box, ellipse) >= 0.9 and r.json()["area"] == from_box.sum()
    rough = ndimage.binary_dilation(ellipse, iterations=3)
    payload = {"mask_png_base64": base64.b64encode(mask_png(rough)).decode()}
    r = client.post(url, json=payload, headers=auth["annotator"])
    assert r.status_code == 200, r.text
    from_mask = png_to_mask(base64.b64decode(r.json()["mask_png_base64"]))
    assert _iou(from_mask, ellipse) >= 0.9 > _iou(rough, ellipse)


BAD_REFINES = [
    ({"box": [0, 0, 64, 48]}, "covers the whole image"),
    ({"box": [10, 10, 80, 20]}, "does not lie inside the 64x48 image"),
    ({"box": [10, 10, 12, 30]}, "too small to refine"),
    ({"box": [1, 2, 3]}, "at least 4 items"),
    ({}, "either a box or a mask"),
    (
        {"mask_png_base64": base64.b64encode(mask_png(np.zeros((H, W), bool))).decode()},
        "needs both object and background",
    ),
]


def test_bad_refine_requests_get_a_sentence(client, auth, bird):
    _, image_id, _ = bird
    for payload, words in BAD_REFINES:
        r = client.post(
            f"/api/annotate/images/{image_id}/refine", json=payload, headers=auth["annotator"]
        )
        assert r.status_code == 422, (payload, r.text)
        assert words in r.json()["detail"], (payload, r.json())


def test_proposals_are_off_until_a_researcher_turns_them_on(client, auth, bird):
    dataset_id, image_id, ellipse = bird
    proposal = f"/api/annotate/images/{image_id}/proposal"
    settings = f"/api/datasets/{dataset_id}"
    assert client.get(settings, headers=auth["researcher"]).json()["proposals"] is None
    item = client.get(f"/api/annotate/images/{image_id}", headers=auth["annotator"]).json()
    assert item["image"]["proposals"] is None
    r = client.get(proposal, headers=auth["annotator"])
    assert r.status_code == 422 and "offers no proposals" in r.json()["detail"]
    for bad, words in [
        ("run:999", "There is no run 999 of this dataset"),
        ("sam", 'Proposals are off (null), "saliency"'),
    ]:
        r = client.patch(settings, json={"proposals": bad}, headers=auth["researcher"])
        assert r.status_code == 422 and words in r.json()["detail"], r.text
    r = client.patch(settings, json={"proposals": "saliency"}, headers=auth["researcher"])
    assert r.status_code == 200 and r.json()["proposals"] == "saliency"
    item = client.get(f"/api/annotate/images/{image_id}", headers=auth["annotator"]).json()
    assert item["image"]["proposals"] == "saliency"
    got = client.get(proposal, headers=auth["annotator"]).json()
    values = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(got["map_png_base64"]))))
    assert got["source"] == "saliency" and values.shape == (H, W) and values.max() == 255
    # the classical map marks the object more than the background
    assert values[ellipse].mean() > values[~ellipse].mean()
    # null turns them off again; the other settings stay
    r = client.patch(settings, json={"proposals": None}, headers=auth["researcher"])
    assert r.status_code == 200 and r.json()["proposals"] is None
    assert client.get(proposal, headers=auth["annotator"]).status_code == 422


def test_agreement_splits_by_provenance_and_freezing_can_leave_proposals_out(
    client,
    auth,
    drawn,  # noqa: F811 - the fixture imported above
    db,
):
    p = drawn["people"]
    for rev in db.scalars(sa.select(AnnotationRevision).join(Annotation)).all():
        owner = db.get(Annotation, rev.annotation_id).annotator_id
        if owner == p[1].id:
            rev.provenance = {"wand": 0.6, "drawn": 0.4}
        elif owner == p[2].id:
            rev.provenance, rev.proposal_source = {"proposal": 1.0}, "saliency"
    db.commit()
    # the reviewer sees how each mask was made
    queue = client.get(
        "/api/reviews",
        params={"status": "accepted", "dataset_id": drawn["dataset_id"]},
        headers=auth["researcher"],
    ).json()["data"]
    made = {(i["annotator"], i["image_id"]): (i["provenance"], i["proposal_source"]) for i in queue}
    assert made[("p1", drawn["a"])] == ({"wand": 0.6, "drawn": 0.4}, None)
    assert made[("p2", drawn["a"])] == ({"proposal": 1.0}, "saliency")
    assert made[("p0", drawn["a"])] == (None, None)
    a = client.get(f"/api/datasets/{drawn['dataset_id']}/agreement", headers=auth["researcher"])
    split = {row["kind"]: row for row in a.json()["by_provenance"]}
    assert list(split) == ["assisted", "proposal", "unrecorded"]
    assert (split["assisted"]["num_masks"], split["assisted"]["num_images"]) == (2, 2)
    assert split["proposal"]["mean_pairwise_iou"] is None  # one such mask per image
    # M3 (rows 16-48) against the others' consensus on image A (M1 and M2 -> rows 0-32)
    assert split["proposal"]["agreement_with_others"] == pytest.approx(1 / 3)
    r = client.post(
        f"/api/datasets/{drawn['dataset_id']}/mask-sets",
        json={"name": "people only", "exclude_proposals": True},
        headers=auth["researcher"],
    )
    assert r.status_code == 201, r.text
    frozen = r.json()
    assert frozen["filter"]["proposal_masks_excluded"] == 1
    seeded_revisions = set(
        db.scalars(
            sa.select(AnnotationRevision.id).where(AnnotationRevision.proposal_source.is_not(None))
        )
    )
    items = db.scalar(sa.select(MaskSet).where(MaskSet.id == frozen["id"])).items
    assert items and not seeded_revisions & {r for item in items for r in item.revision_ids}


def test_a_finished_runs_salience_map_is_a_proposal_source(client, auth, bird, db):
    dataset_id, image_id, _ = bird
    settings = f"/api/datasets/{dataset_id}"
    running = TrainingRun(dataset_id=dataset_id, method="pgd", config={}, state="running")
    finished = TrainingRun(dataset_id=dataset_id, method="pgd", config={}, state="succeeded")
    db.add_all([running, finished])
    db.commit()
    r = client.patch(settings, json={"proposals": f"run:{running.id}"}, headers=auth["researcher"])
    assert r.status_code == 422 and "has not finished" in r.json()["detail"]
    # the run's Grad-CAM sample of the image (16 x 16, bright at the top left), as the worker
    # writes it; first for another image only
    grey = np.zeros((16, 16), np.uint8)
    grey[:8, :8] = 255
    buf = io.BytesIO()
    PILImage.fromarray(grey).save(buf, "PNG")
    folder = f"{run_out_key(finished.id)}/salience"
    storage = get_storage()
    storage.put_bytes(f"{folder}/s0_model.png", buf.getvalue())
    sample = {"image_id": image_id + 1000, "model": "s0_model.png", "image": "s0_image.png"}
    storage.put_bytes(f"{folder}/salience.json", json.dumps({"samples": [sample]}).encode())
    r = client.patch(settings, json={"proposals": f"run:{finished.id}"}, headers=auth["researcher"])
    assert r.status_code == 200 and r.json()["proposals"] == f"run:{finished.id}"
    proposal = f"/api/annotate/images/{image_id}/proposal"
    r = client.get(proposal, headers=auth["annotator"])
    assert r.status_code == 404
    assert r.json()["detail"] == f"Run {finished.id} has no salience map of this image."
    sample["image_id"] = image_id
    storage.put_bytes(f"{folder}/salience.json", json.dumps({"samples": [sample]}).encode())
    got = client.get(proposal, headers=auth["annotator"]).json()
    values = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(got["map_png_base64"]))))
    assert got["source"] == f"run:{finished.id}" and values.shape == (H, W)
    assert values[:20, :28].min() == 255 and values[28:, 36:].max() == 0
