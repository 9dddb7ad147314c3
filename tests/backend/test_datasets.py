"""Dataset import: a good tree lands whole; every hostile upload is refused with a sentence and
leaves nothing behind (no rows, no files)."""

import io
import zipfile

import pytest
import sqlalchemy as sa
from PIL import Image

from backend.core.config import get_settings
from backend.core.storage import get_storage
from backend.models import Dataset, DatasetClass
from backend.models import Image as ImageRow
from tests.conftest import make_png, make_zip, tiny_imagefolder_zip


def _upload(client, headers, data: bytes, name="ds"):
    return client.post(
        "/api/datasets/import",
        headers=headers,
        data={"name": name},
        files={"file": ("upload.zip", data, "application/zip")},
    )


def _stored_files() -> list[str]:
    """Every stored dataset file (the local folder or the object store, as configured)."""
    return get_storage().keys("datasets")


def _nothing_stored(db):
    assert db.scalar(sa.select(sa.func.count()).select_from(Dataset)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(ImageRow)) == 0
    assert db.scalar(sa.select(sa.func.count()).select_from(DatasetClass)) == 0
    assert _stored_files() == []


def test_import_imagefolder_zip(client, auth, db):
    before = len(_stored_files())
    r = _upload(client, auth["researcher"], tiny_imagefolder_zip(per_class=3, size=20))
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["num_images"] == 6 and body["num_classes"] == 2
    assert len(body["content_hash"]) == 64
    detail = client.get(f"/api/datasets/{body['id']}", headers=auth["researcher"]).json()
    assert [c["name"] for c in detail["classes"]] == ["cat", "dog"]
    assert sum(detail["splits"].values()) == 6
    images = client.get(f"/api/datasets/{body['id']}/images", headers=auth["researcher"]).json()
    assert images["count"] == 6
    first = images["data"][0]
    assert (first["width"], first["height"]) == (20, 20)
    pixels = client.get(f"/api/images/{first['id']}/file", headers=auth["annotator"])
    assert pixels.status_code == 200
    assert Image.open(io.BytesIO(pixels.content)).size == (20, 20)
    assert len(_stored_files()) == before + 6


def test_import_with_split_folders_and_wrapper_folder(client, auth):
    files = {
        f"mydata/{split}/{c}/{i}.png": make_png(10, 10)
        for split in ("train", "test")
        for c in ("a", "b", "c")
        for i in range(2)
    }
    r = _upload(client, auth["researcher"], make_zip(files))
    assert r.status_code == 201, r.text
    detail = client.get(f"/api/datasets/{r.json()['id']}", headers=auth["researcher"]).json()
    assert detail["splits"] == {"train": 6, "test": 6}
    assert [c["name"] for c in detail["classes"]] == ["a", "b", "c"]


def _bomb_png() -> bytes:
    # A real PNG header declaring 20000 x 20000 pixels, tiny on disk: refused before decoding.
    img = Image.new("1", (20000, 20000))
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


HOSTILE = {
    "not an image": (
        lambda: make_zip({"cat/0.png": make_png(), "cat/1.png": b"this is not a png"}),
        400,
        "is not an image",
    ),
    "truncated image": (
        lambda: make_zip({"cat/0.png": make_png(), "dog/1.png": make_png(64, 64)[:60]}),
        400,
        "is not an image",
    ),
    "decompression bomb": (
        lambda: make_zip({"cat/0.png": make_png(), "dog/big.png": _bomb_png()}),
        400,
        "pixel",
    ),
    "zip slip": (
        lambda: make_zip({"cat/0.png": make_png(), "../../evil/1.png": make_png()}),
        400,
        "outside the dataset folder",
    ),
    "absolute path": (
        lambda: make_zip({"cat/0.png": make_png(), "/etc/cron.d/x.png": make_png()}),
        400,
        "outside the dataset folder",
    ),
    "empty archive": (lambda: make_zip({}), 400, "empty"),
    "class-less tree": (
        lambda: make_zip({"0.png": make_png(), "1.png": make_png()}),
        400,
        "class folder",
    ),
    "not a zip": (lambda: b"PK\x03\x04 definitely not a zip file", 400, "not a valid zip"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_uploads_are_refused_and_leave_nothing(client, auth, db, case):
    make, status, phrase = HOSTILE[case]
    r = _upload(client, auth["researcher"], make())
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert phrase in detail and detail.endswith("."), detail
    _nothing_stored(db)


def test_symlink_entry_refused(client, auth, db):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("cat/0.png", make_png())
        info = zipfile.ZipInfo("cat/link.png")
        info.external_attr = 0o120777 << 16
        zf.writestr(info, "/etc/passwd")
    r = _upload(client, auth["researcher"], buf.getvalue())
    assert r.status_code == 400 and "symbolic link" in r.json()["detail"]
    _nothing_stored(db)


def test_upload_over_size_limit_is_413(client, auth, db, monkeypatch):
    monkeypatch.setattr(get_settings(), "max_upload_bytes", 1000)
    r = _upload(client, auth["researcher"], tiny_imagefolder_zip(per_class=5, size=64))
    assert r.status_code == 413
    assert r.json()["detail"] == "The upload is larger than the allowed size."
    _nothing_stored(db)


def test_duplicate_name_refused_and_first_kept(client, auth, db):
    assert _upload(client, auth["researcher"], tiny_imagefolder_zip(), name="x").status_code == 201
    r = _upload(client, auth["researcher"], tiny_imagefolder_zip(), name="x")
    assert r.status_code == 409 and "already exists" in r.json()["detail"]
    assert db.scalar(sa.select(sa.func.count()).select_from(ImageRow)) == 6


def test_missing_form_field_names_it(client, auth):
    r = client.post("/api/datasets/import", headers=auth["researcher"], data={"name": "n"})
    assert r.status_code == 422
    assert "file" in r.json()["detail"]


def test_cli_import_from_directory(tmp_path, db):
    from backend.cli import main

    for c in ("zero", "one"):
        (tmp_path / c).mkdir()
        for i in range(2):
            (tmp_path / c / f"{i}.png").write_bytes(make_png(12, 12))
    assert main(["import-dataset", str(tmp_path), "--name", "from-cli"]) == 0
    ds = db.scalar(sa.select(Dataset).where(Dataset.name == "from-cli"))
    assert ds is not None
    assert db.scalar(sa.select(sa.func.count()).select_from(ImageRow)) == 4
    (tmp_path / "zero" / "bad.png").write_bytes(b"nope")
    assert main(["import-dataset", str(tmp_path), "--name", "from-cli-2"]) == 2
    assert db.scalar(sa.select(sa.func.count()).select_from(Dataset)) == 1
