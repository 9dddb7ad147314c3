"""Consensus, agreement, mask sets, export / import and the training export, on PostgreSQL,
with hand-made masks whose numbers are known exactly."""

from __future__ import annotations

import io
import json
import zipfile
from fractions import Fraction

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image as PILImage
from pycocotools import mask as coco_mask

from backend.core.config import get_settings
from backend.core.storage import get_storage
from backend.models import Annotation, AnnotationRevision, MaskSet, User, utcnow
from backend.models import Image as ImageRow
from backend.services.masks import (
    mask_sha256,
    mask_to_png,
    png_to_mask,
    rle_counts,
    rle_decode,
    rle_encode,
)
from worker.training_export import write_training_export

S = 64


def rows(a: int, b: int) -> np.ndarray:
    m = np.zeros((S, S), bool)
    m[a:b] = True
    return m


# Image A, three annotators: pairwise IoU 1/2, 1/3, 0 -> mean 5/18.
M1, M2, M3 = rows(0, 32), rows(0, 16), rows(16, 48)


def add_mask(
    db, user: User, image_id: int, mask: np.ndarray, status="accepted", active_ms=1000
) -> Annotation:
    ann = db.scalar(
        sa.select(Annotation).where(
            Annotation.image_id == image_id, Annotation.annotator_id == user.id
        )
    )
    if ann is None:
        ann = Annotation(image_id=image_id, annotator_id=user.id, latest_revision=0)
        db.add(ann)
        db.flush()
    ann.latest_revision += 1
    ann.status = status
    ann.active_ms = active_ms
    ann.submitted_at = utcnow()
    db.add(
        AnnotationRevision(
            annotation_id=ann.id,
            revision=ann.latest_revision,
            save_id=f"t{ann.latest_revision}",
            mask_bytes=mask_to_png(mask),
            width=S,
            height=S,
            area=int(mask.sum()),
            sha256=mask_sha256(mask),
            active_ms=active_ms,
        )
    )
    db.commit()
    return ann


def people(db, n: int) -> list[User]:
    out = []
    for i in range(n):
        u = User(username=f"p{i}", password_hash="!", role="annotator")
        db.add(u)
        out.append(u)
    db.commit()
    return out


@pytest.fixture()
def drawn(seeded, db):
    """Image A: three accepted masks; image B: p0 and p1 accepted; p3's mask on A submitted."""
    a, b = seeded["image_ids"][:2]
    p = people(db, 4)
    add_mask(db, p[0], a, M1, active_ms=1000)
    add_mask(db, p[1], a, M2, active_ms=3000)
    add_mask(db, p[2], a, M3, active_ms=5000)
    add_mask(db, p[0], b, rows(0, 20), active_ms=2000)
    add_mask(db, p[1], b, rows(10, 20), active_ms=4000)
    add_mask(db, p[3], a, rows(60, 64), status="submitted")
    return {"a": a, "b": b, "people": p, **seeded}


def png_array(data: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(data)))


# ---------------------------------------------------------------------------- RLE


@pytest.mark.parametrize("seed", range(6))
def test_rle_matches_pycocotools_exactly(seed):
    rng = np.random.default_rng(seed)
    h, w = rng.integers(1, 40, size=2)
    density = [0.0, 1.0, 0.5, 0.02, 0.98, 0.3][seed]
    m = rng.random((h, w)) < density
    mine = rle_encode(m)
    theirs = coco_mask.encode(np.asfortranarray(m.astype(np.uint8)))
    assert mine["counts"] == theirs["counts"].decode()
    assert mine["size"] == [int(h), int(w)]
    assert np.array_equal(rle_decode(mine), m)
    assert np.array_equal(rle_decode({"size": [h, w], "counts": rle_counts(m)}), m)
    assert np.array_equal(
        coco_mask.decode({"size": [int(h), int(w)], "counts": mine["counts"].encode()}), m
    )


def test_rle_refuses_counts_of_the_wrong_total():
    from backend.core.errors import Invalid

    with pytest.raises(Invalid):
        rle_decode({"size": [4, 4], "counts": [3, 4]})


# ---------------------------------------------------------------------------- consensus


def test_consensus_pngs_and_image_agreement(client, auth, drawn):
    h = auth["researcher"]
    a = drawn["a"]
    r = client.get(f"/api/images/{a}/consensus.png", headers=h)
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    mean = png_array(r.content)
    assert mean.dtype == np.uint8 and mean.shape == (S, S)
    assert (mean[0:16] == 170).all() and (mean[16:32] == 170).all()
    assert (mean[32:48] == 85).all() and (mean[48:] == 0).all()
    binary = png_array(client.get(f"/api/images/{a}/consensus-binary.png", headers=h).content)
    assert np.array_equal(binary.astype(bool), rows(0, 32))
    low = client.get(
        f"/api/images/{a}/consensus-binary.png", headers=h, params={"threshold": 0.3}
    ).content
    assert np.array_equal(png_array(low).astype(bool), rows(0, 48))
    # with submitted masks too, p3's strip joins the mean (1/4 of annotators)
    both = client.get(
        f"/api/images/{a}/consensus.png", headers=h, params={"statuses": "accepted,submitted"}
    ).content
    assert (png_array(both)[60:] == 64).all()  # round(255 / 4)
    ag = client.get(f"/api/images/{a}/agreement", headers=h).json()
    assert ag["num_annotators"] == 3
    assert ag["mean_pairwise_iou"] == pytest.approx(float(Fraction(5, 18)), abs=1e-12)
    bad = client.get(f"/api/images/{a}/consensus.png", headers=h, params={"statuses": "draft"})
    assert bad.status_code == 422 and bad.json()["detail"].endswith(".")
    none = client.get(f"/api/images/{drawn['image_ids'][5]}/consensus.png", headers=h)
    assert none.status_code == 404


def test_dataset_agreement_values(client, auth, drawn):
    h = auth["researcher"]
    r = client.get(
        f"/api/datasets/{drawn['dataset_id']}/agreement",
        headers=h,
        params={"splits": 50, "seed": 3},
    )
    body = r.json()
    assert r.status_code == 200, body
    per_image = {i["image_id"]: i for i in body["images"]}
    assert per_image[drawn["a"]]["mean_pairwise_iou"] == pytest.approx(5 / 18)
    assert per_image[drawn["b"]]["mean_pairwise_iou"] == pytest.approx(10 / 20)
    assert body["mean_pairwise_iou"] == pytest.approx((5 / 18 + 0.5) / 2)
    # Leave-one-out: p0 vs (M2+M3)/2 >= .5 = rows 0-48 on A (2/3); vs rows 10-20 on B (1/2)
    q = {x["annotator"]: x for x in body["annotators"]}
    assert q["p0"]["agreement_with_others"] == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert q["p1"]["agreement_with_others"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    assert q["p2"]["agreement_with_others"] == pytest.approx(1 / 3)
    assert q["p0"]["median_active_ms"] == 1500 and q["p1"]["num_masks"] == 2
    assert q["p2"]["mean_area_fraction"] == pytest.approx(0.5)
    assert "p3" not in q  # submitted, not accepted
    # the split-half ceiling is an average of per-split values that are each 1/3 or 2/3 on A
    # (a single annotator against the other two) and 1/2 on B when both halves drew it
    assert 1 / 3 <= body["split_half_iou"] <= 2 / 3
    again = client.get(
        f"/api/datasets/{drawn['dataset_id']}/agreement",
        headers=h,
        params={"splits": 50, "seed": 3},
    ).json()
    assert again == body  # seeded


def test_split_half_with_two_annotators_is_their_agreement(client, auth, seeded, db):
    p = people(db, 2)
    a = seeded["image_ids"][0]
    x, y = rows(0, 30), rows(10, 40)
    add_mask(db, p[0], a, x)
    add_mask(db, p[1], a, y)
    body = client.get(
        f"/api/datasets/{seeded['dataset_id']}/agreement",
        headers=auth["researcher"],
        params={"splits": 7},
    ).json()
    assert body["split_half_iou"] == pytest.approx(20 / 40)
    expected_r = np.corrcoef(x.ravel().astype(float), y.ravel().astype(float))[0, 1]
    assert body["split_half_correlation"] == pytest.approx(expected_r)
    assert body["mean_pairwise_iou"] == pytest.approx(0.5)


# ---------------------------------------------------------------------------- review


def test_review_queue_accept_and_reject(client, auth, drawn, db):
    h = auth["researcher"]
    q = client.get("/api/reviews", headers=h, params={"dataset_id": drawn["dataset_id"]}).json()
    assert q["count"] == 1
    item = q["data"][0]
    assert item["annotator"] == "p3" and item["area"] == 4 * S
    mask = client.get(item["mask_url"], headers=h)
    assert np.array_equal(png_array(mask.content).astype(bool), rows(60, 64))
    r = client.post(f"/api/reviews/{item['annotation_id']}", headers=h, json={"decision": "reject"})
    assert r.status_code == 422 and r.json()["detail"] == "Say why the mask is rejected."
    r = client.post(
        f"/api/reviews/{item['annotation_id']}",
        headers=h,
        json={"decision": "reject", "comment": "only the border"},
    )
    assert r.json()["status"] == "rejected"
    assert client.get("/api/reviews", headers=h).json()["count"] == 0
    assert (
        client.post("/api/reviews/999999", headers=h, json={"decision": "accept"}).status_code
        == 404
    )


# ---------------------------------------------------------------------------- mask sets


def test_mask_set_freeze_hash_stable_and_changes(client, auth, drawn, db):
    h = auth["researcher"]
    url = f"/api/datasets/{drawn['dataset_id']}/mask-sets"
    r = client.post(url, headers=h, json={"name": "all accepted"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["num_images"] == 2 and len(first["hash"]) == 64
    again = client.post(url, headers=h, json={"name": "same again"})
    assert again.status_code == 200 and again.json()["id"] == first["id"]
    k3 = client.post(url, headers=h, json={"name": "k3", "min_annotators": 3}).json()
    assert k3["num_images"] == 1 and k3["hash"] != first["hash"]
    agree = client.post(url, headers=h, json={"name": "agree", "min_agreement": 0.4}).json()
    assert agree["num_images"] == 1 and agree["hash"] not in (first["hash"], k3["hash"])
    none = client.post(url, headers=h, json={"name": "none", "min_annotators": 9})
    assert none.status_code == 422 and "No image passes" in none.json()["detail"]
    detail = client.get(f"/api/mask-sets/{k3['id']}", headers=h).json()
    item = detail["items"][0]
    assert item["image_id"] == drawn["a"] and item["num_annotators"] == 3
    assert item["agreement"] == pytest.approx(5 / 18)
    revs = db.scalars(
        sa.select(AnnotationRevision.id)
        .join(Annotation)
        .where(Annotation.image_id == drawn["a"], Annotation.status == "accepted")
    ).all()
    assert sorted(item["revision_ids"]) == sorted(revs)
    png = client.get(
        f"/api/mask-sets/{k3['id']}/images/{drawn['a']}/consensus.png", headers=h
    ).content
    assert (png_array(png)[:32] == 170).all()
    # a new revision changes the consensus and so the hash; the old set stays as it was
    add_mask(db, drawn["people"][2], drawn["a"], rows(0, 48))
    k3b = client.post(url, headers=h, json={"name": "k3 later", "min_annotators": 3})
    assert k3b.status_code == 201 and k3b.json()["hash"] != k3["hash"]
    assert client.get(f"/api/mask-sets/{k3['id']}", headers=h).json() == detail
    listed = client.get(url, headers=h).json()
    assert listed["count"] == 4


def test_freezing_the_same_masks_again_says_under_which_name(client, auth, drawn):
    h = auth["researcher"]
    url = f"/api/datasets/{drawn['dataset_id']}/mask-sets"
    first = client.post(url, headers=h, json={"name": "all accepted"})
    assert first.status_code == 201 and first.json()["message"] is None
    again = client.post(url, headers=h, json={"name": "typed anew"})
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["name"] == "all accepted"
    assert "already frozen as \u201call accepted\u201d" in again.json()["message"]
    assert client.get(url, headers=h).json()["count"] == 1


def test_mask_set_names_are_unique_per_dataset(client, auth, drawn, db):
    h = auth["researcher"]
    url = f"/api/datasets/{drawn['dataset_id']}/mask-sets"
    assert client.post(url, headers=h, json={"name": "mine"}).status_code == 201
    other = client.post(url, headers=h, json={"name": "mine", "min_annotators": 3})
    assert other.status_code == 409, other.text
    body = other.json()
    assert "already has a mask set named \u201cmine\u201d" in body["detail"]
    assert body["detail"].startswith("This dataset")
    assert client.get(url, headers=h).json()["count"] == 1
    # the database holds the rule too
    with pytest.raises(sa.exc.IntegrityError):
        db.add(MaskSet(dataset_id=drawn["dataset_id"], name="mine", hash="b" * 64, filter={}))
        db.commit()
    db.rollback()


# ---------------------------------------------------------------------------- export / import


def _counts(db):
    db.expire_all()
    return tuple(
        db.scalar(sa.select(sa.func.count()).select_from(t))
        for t in (User, Annotation, AnnotationRevision)
    )


def _import(client, h, dataset_id, data: bytes, **form):
    return client.post(
        f"/api/datasets/{dataset_id}/masks/import",
        headers=h,
        data={"name": "rt", **form},
        files={"file": ("masks.bin", data, "application/octet-stream")},
    )


def _imported(db, name: str) -> dict[int, np.ndarray]:
    db.expire_all()
    user = db.scalar(sa.select(User).where(User.username == "import:" + name))
    out = {}
    for ann in db.scalars(sa.select(Annotation).where(Annotation.annotator_id == user.id)):
        out[ann.image_id] = png_to_mask(ann.revisions[-1].mask_bytes)
    return out


def test_png_zip_export_import_round_trip(client, auth, drawn, db):
    h = auth["researcher"]
    p0 = drawn["people"][0].id
    r = client.get(
        f"/api/datasets/{drawn['dataset_id']}/masks/export",
        headers=h,
        params={"format": "png", "annotator_id": p0},
    )
    assert r.status_code == 200 and r.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(r.content)).namelist()
    assert "masks.json" in names and len(names) == 3
    imp = _import(client, h, drawn["dataset_id"], r.content)
    assert imp.status_code == 201, imp.text
    assert imp.json()["annotator"] == "import:rt" and imp.json()["imported"] == 2
    got = _imported(db, "rt")
    assert np.array_equal(got[drawn["a"]], M1) and np.array_equal(got[drawn["b"]], rows(0, 20))
    account = db.scalar(sa.select(User).where(User.username == "import:rt"))
    assert account.role == "annotator" and not account.is_active
    # the imported masks are accepted, so they join the consensus
    ag = client.get(f"/api/images/{drawn['a']}/agreement", headers=h).json()
    assert ag["num_annotators"] == 4


def test_coco_export_decodes_with_pycocotools_and_round_trips(client, auth, drawn, db):
    h = auth["researcher"]
    r = client.get(
        f"/api/datasets/{drawn['dataset_id']}/masks/export", headers=h, params={"format": "coco"}
    )
    doc = r.json()
    assert r.status_code == 200 and len(doc["annotations"]) == 5
    assert {c["name"] for c in doc["categories"]} == {"cat", "dog"}
    images = {i["id"]: i for i in doc["images"]}
    expected = {
        ("p0", drawn["a"]): M1,
        ("p1", drawn["a"]): M2,
        ("p2", drawn["a"]): M3,
        ("p0", drawn["b"]): rows(0, 20),
        ("p1", drawn["b"]): rows(10, 20),
    }
    for ann in doc["annotations"]:
        seg = ann["segmentation"]
        assert seg["size"] == [images[ann["image_id"]]["height"], images[ann["image_id"]]["width"]]
        decoded = coco_mask.decode({"size": seg["size"], "counts": seg["counts"].encode()})
        want = expected[(ann["attributes"]["annotator"], ann["image_id"])]
        assert np.array_equal(decoded.astype(bool), want)
        assert (
            ann["area"]
            == int(want.sum())
            == int(coco_mask.area({"size": seg["size"], "counts": seg["counts"].encode()}))
        )
        assert (
            ann["bbox"]
            == coco_mask.toBbox({"size": seg["size"], "counts": seg["counts"].encode()}).tolist()
        )
        assert ann["iscrowd"] == 0 and ann["attributes"]["revision"] == 1
    # import one annotator's COCO file back: the same pixels
    one = client.get(
        f"/api/datasets/{drawn['dataset_id']}/masks/export",
        headers=h,
        params={"format": "coco", "annotator_id": drawn["people"][1].id},
    ).content
    imp = _import(client, h, drawn["dataset_id"], one, format="coco", name="coco1")
    assert imp.status_code == 201, imp.text
    got = _imported(db, "coco1")
    assert np.array_equal(got[drawn["a"]], M2) and np.array_equal(got[drawn["b"]], rows(10, 20))


def test_mask_set_export_and_cub_style_import(client, auth, drawn, db):
    h = auth["researcher"]
    ms = client.post(
        f"/api/datasets/{drawn['dataset_id']}/mask-sets",
        headers=h,
        json={"name": "k3", "min_annotators": 3},
    ).json()
    z = client.get(
        f"/api/datasets/{drawn['dataset_id']}/masks/export",
        headers=h,
        params={"mask_set_id": ms["id"]},
    ).content
    zf = zipfile.ZipFile(io.BytesIO(z))
    pngs = [n for n in zf.namelist() if n.endswith(".png")]
    assert len(pngs) == 1 and pngs[0].startswith("consensus/")
    assert (png_array(zf.read(pngs[0]))[:32] == 170).all()
    # CUB-200-2011 ships soft grey segmentations beside images/<class>/<name>.jpg
    image = db.get(ImageRow, drawn["image_ids"][3])
    stem = image.filename.rsplit(".", 1)[0]
    soft = np.tile(np.linspace(0, 255, S).astype(np.uint8), (S, 1))  # left dark, right bright
    buf = io.BytesIO()
    PILImage.fromarray(soft, "L").save(buf, "PNG")
    files = {f"segmentations/{stem}.png": buf.getvalue(), "README.txt": b"ignored"}
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as out:
        for n, d in files.items():
            out.writestr(n, d)
    before = _counts(db)
    refused = _import(client, h, drawn["dataset_id"], zbuf.getvalue(), format="png", name="cub")
    assert refused.status_code == 422 and "not binary" in refused.json()["detail"]
    assert _counts(db) == before
    r = _import(client, h, drawn["dataset_id"], zbuf.getvalue(), format="cub", name="cub")
    assert r.status_code == 201, r.text
    got = _imported(db, "cub")[image.id]
    assert np.array_equal(got, soft >= 128)


def _zip(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, d in files.items():
            zf.writestr(n, d)
    return buf.getvalue()


def _binary_png(mask: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(np.where(mask, 255, 0).astype(np.uint8), "L").save(buf, "PNG")
    return buf.getvalue()


def test_bad_imports_store_nothing(client, auth, drawn, db):
    h = auth["researcher"]
    ds = drawn["dataset_id"]
    image = db.get(ImageRow, drawn["a"])
    good = _binary_png(M1)
    cases = {
        "not a zip": (b"plain text", {}, 400, "not a valid zip"),
        "unknown file": (_zip({"nobody/zzz.png": good}), {}, 422, "No image of this dataset"),
        "wrong size": (
            _zip({f"{image.id}.png": _binary_png(np.ones((8, 8), bool))}),
            {"match_by": "id"},
            422,
            "pixels but its image is",
        ),
        "one good one bad": (
            _zip({f"x/{image.id}.png": good, "x/12345678.png": good}),
            {"match_by": "id"},
            422,
            "No image",
        ),
        "no png": (_zip({"a.txt": b"x"}), {}, 422, "no PNG"),
        "bad name": (
            _zip({f"{image.id}.png": good}),
            {"name": "../x", "match_by": "id"},
            422,
            "import name",
        ),
        "coco polygon": (
            json.dumps(
                {
                    "images": [{"id": image.id, "file_name": image.filename}],
                    "annotations": [{"image_id": image.id, "segmentation": [[0, 0, 1, 1, 2, 0]]}],
                }
            ).encode(),
            {"format": "coco"},
            422,
            "polygons",
        ),
        "coco garbage": (b"{", {"format": "coco"}, 422, "not COCO JSON"),
        "coco bad counts": (
            json.dumps(
                {
                    "images": [{"id": image.id, "file_name": image.filename}],
                    "annotations": [
                        {"image_id": image.id, "segmentation": {"size": [S, S], "counts": [5, 5]}}
                    ],
                }
            ).encode(),
            {"format": "coco"},
            422,
            "do not add up",
        ),
    }
    before = _counts(db)
    for label, (data, form, status, words) in cases.items():
        r = _import(client, h, ds, data, **form)
        assert r.status_code == status, (label, r.text)
        assert words in r.json()["detail"], (label, r.json())
        assert _counts(db) == before, label


def test_mask_import_entries_are_capped_like_the_dataset_import(
    client, auth, drawn, db, monkeypatch
):
    """A mask zip's entry is held to MAX_ARCHIVE_ENTRY_BYTES (the dataset import's cap,
    decompressed in steps): refused with a 413 and a sentence, nothing stored."""
    monkeypatch.setattr(get_settings(), "max_archive_entry_bytes", 2**20)
    image = db.get(ImageRow, drawn["a"])
    big = _zip({f"{image.id}.png": bytes(3 * 2**20)})
    before = _counts(db)
    r = _import(client, auth["researcher"], drawn["dataset_id"], big, match_by="id")
    assert r.status_code == 413, r.text
    assert r.json()["detail"] == (
        f"The archive entry '{image.id}.png' expands to more than 1 MiB; nothing was imported."
    )
    assert _counts(db) == before


def test_coco_import_checks_the_declared_size_before_decoding(client, auth, drawn, db, monkeypatch):
    """A COCO annotation that declares 64 Mpx for a 64x64 image is refused on its declared
    size: nothing is decoded."""
    from backend.services import mask_exchange

    def never(_seg):
        raise AssertionError("decoded before its size was checked")

    monkeypatch.setattr(mask_exchange, "rle_decode", never)
    image = db.get(ImageRow, drawn["a"])
    doc = {
        "images": [{"id": image.id, "file_name": image.filename}],
        "annotations": [
            {"image_id": image.id, "segmentation": {"size": [8000, 8000], "counts": [64_000_000]}}
        ],
    }
    r = _import(
        client, auth["researcher"], drawn["dataset_id"], json.dumps(doc).encode(), format="coco"
    )
    assert r.status_code == 422, r.text
    assert "is 8000x8000 pixels but its image is 64x64" in r.json()["detail"]


# ---------------------------------------------------------------------------- training export


def test_training_export_manifest(client, auth, drawn, db, tmp_path):
    h = auth["researcher"]
    ms = client.post(
        f"/api/datasets/{drawn['dataset_id']}/mask-sets", headers=h, json={"name": "all"}
    ).json()
    storage = get_storage()
    path = write_training_export(db, storage, drawn["dataset_id"], ms["id"], tmp_path / "out")
    manifest = json.loads(path.read_text())
    assert manifest["format"] == "sipat-dataset/1" and manifest["dataset"] == "tiny"
    assert manifest["classes"] == ["cat", "dog"]
    assert manifest["mask_set"] == {"id": ms["id"], "hash": ms["hash"]}
    assert len(manifest["images"]) == len(drawn["image_ids"])
    by_id = {r["id"]: r for r in manifest["images"]}
    for row in manifest["images"]:
        image = db.get(ImageRow, row["id"])
        assert (tmp_path / "out" / row["file"]).read_bytes() == storage.get_bytes(image.storage_key)
        assert row["label"] == image.dataset_class.index and row["split"] == image.split
        assert row["mask"] == (
            f"masks/{row['id']}.png" if row["id"] in (drawn["a"], drawn["b"]) else None
        )
    grey = PILImage.open(tmp_path / "out" / by_id[drawn["a"]]["mask"])
    assert grey.mode == "L"
    values = np.asarray(grey)
    assert (values[:32] == 170).all() and (values[32:48] == 85).all() and (values[48:] == 0).all()
    # without a mask set: no masks, mask_set null
    plain = json.loads(
        write_training_export(
            db, storage, drawn["dataset_id"], None, tmp_path / "plain"
        ).read_text()
    )
    assert plain["mask_set"] is None and all(r["mask"] is None for r in plain["images"])
    other = MaskSet(dataset_id=drawn["dataset_id"], name="x", hash="0" * 64)
    db.add(other)
    db.commit()
    with pytest.raises(ValueError):
        write_training_export(db, storage, drawn["dataset_id"] + 1, ms["id"], tmp_path / "bad")


def test_rle_counts_that_fall_short_are_refused_before_decoding():
    """pycocotools fills a mask whose counts fall short from uninitialised memory; the codec
    refuses such counts (list or string form) before pycocotools sees them."""
    from backend.core.errors import Invalid

    small = rle_encode(np.ones((2, 2), dtype=bool))
    for counts in (small["counts"], [0, 4], [3, 4]):
        with pytest.raises(Invalid, match="add up"):
            rle_decode({"size": [4, 4], "counts": counts})
    assert rle_decode({"size": [2, 2], "counts": small["counts"]}).all()
