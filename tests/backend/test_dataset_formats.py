"""The papers' datasets imported as they are distributed, recognised by layout: CIFAR-10 and
CIFAR-100 (python pickles, loaded without running code from the file), CUB-200-2011 with its
segmentations as accepted masks, ImageNet-style train/ and val/ folders. Every file here is
written in the distributed format (Python-2 pickles with protocol 2 and 8-bit strings, real
JPEGs, soft grey PNG maps). A malformed tree is refused with a sentence and leaves the
database and storage exactly as they were."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path, PurePosixPath

import numpy as np
import pytest
import sqlalchemy as sa
from PIL import Image

from backend.core.errors import DomainError
from backend.core.storage import get_storage
from backend.main import http_status
from backend.models import Annotation, AnnotationRevision, Dataset, DatasetClass, User
from backend.models import Image as ImageRow
from backend.services.dataset_formats import Entry, load_pickle
from backend.services.datasets import (
    directory_entries,
    import_dataset,
    zip_entries,
)
from backend.services.masks import png_to_mask

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]  # fmt: skip

# ---------------------------------------------------------------------------- distributed files


class Py2Pickler(pickle._Pickler):  # type: ignore[name-defined]
    """Writes what Python 2's cPickle wrote for CIFAR: protocol 2, every str (keys, file names,
    the arrays' raw data) as an 8-bit string, numpy's globals under numpy.core.multiarray."""

    dispatch = pickle._Pickler.dispatch.copy()  # type: ignore[attr-defined]

    def save_str8(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_str8
    dispatch[bytes] = save_str8

    def save_global(self, obj, name=None):
        module = {"numpy._core.multiarray": "numpy.core.multiarray"}.get(
            obj.__module__, obj.__module__
        )
        self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
        self.memoize(obj)


def py2_pickle(obj) -> bytes:
    buf = io.BytesIO()
    Py2Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def cifar_batch(n: int, n_classes: int, seed: int, label_key: bytes, name: str) -> dict:
    rng = np.random.default_rng(seed)
    labels = [int(v) for v in rng.integers(0, n_classes, n)]
    batch = {
        b"batch_label": name.encode(),
        label_key: labels,
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [f"img_{seed}_{i:04d}.png".encode() for i in range(n)],
    }
    if label_key == b"fine_labels":
        batch[b"coarse_labels"] = [v // 5 for v in labels]
    return batch


def cifar10_tree(root: Path, n_train: int = 6, n_test: int = 4) -> Path:
    """cifar-10-batches-py with two batches (data_batch_1, test_batch), as the tarball has."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    meta = {b"label_names": [n.encode() for n in CIFAR10_NAMES], b"num_cases_per_batch": n_train,
            b"num_vis": 3072}  # fmt: skip
    (d / "batches.meta").write_bytes(py2_pickle(meta))
    train = cifar_batch(n_train, 10, 1, b"labels", "training batch 1 of 5")
    test = cifar_batch(n_test, 10, 2, b"labels", "testing batch 1 of 1")
    (d / "data_batch_1").write_bytes(py2_pickle(train))
    (d / "test_batch").write_bytes(py2_pickle(test))
    (d / "readme.html").write_text("<html>CIFAR-10</html>")
    return d


def cifar100_tree(root: Path) -> Path:
    d = root / "cifar-100-python"
    d.mkdir(parents=True)
    fine = [f"fine_{i:02d}" for i in range(100)]
    coarse = [f"coarse_{i:02d}" for i in range(20)]
    meta = {b"fine_label_names": [n.encode() for n in fine],
            b"coarse_label_names": [n.encode() for n in coarse]}  # fmt: skip
    (d / "meta").write_bytes(py2_pickle(meta))
    (d / "train").write_bytes(py2_pickle(cifar_batch(5, 100, 3, b"fine_labels", "training")))
    (d / "test").write_bytes(py2_pickle(cifar_batch(3, 100, 4, b"fine_labels", "testing")))
    (d / "file.txt~").write_text("")
    return d


def expected_cifar(d: Path, batch: str) -> tuple[np.ndarray, list[int], list[str]]:
    with open(d / batch, "rb") as f:
        raw = pickle.load(f, encoding="bytes")
    labels = raw.get(b"labels", raw.get(b"fine_labels"))
    return raw[b"data"], labels, [n.decode() for n in raw[b"filenames"]]


CUB_CLASSES = {1: "001.Black_footed_Albatross", 2: "002.Laysan_Albatross"}
# image id -> (path under images/, class id, 1 = train / 0 = test, width, height)
CUB_IMAGES = {
    1: ("001.Black_footed_Albatross/Black_Footed_Albatross_0046_18.jpg", 1, 1, 40, 30),
    2: ("001.Black_footed_Albatross/Black_Footed_Albatross_0009_34.jpg", 1, 0, 36, 36),
    3: ("002.Laysan_Albatross/Laysan_Albatross_0002_1027.jpg", 2, 1, 30, 44),
}


def cub_tree(root: Path) -> Path:
    """CUB_200_2011 with three birds: JPEGs, soft grey segmentations, the txt files, and the
    files an importer must leave alone (attributes.txt beside the folder, bounding boxes)."""
    d = root / "CUB_200_2011"
    rng = np.random.default_rng(7)
    for image_id, (rel, _, _, w, h) in CUB_IMAGES.items():
        img = d / "images" / rel
        img.parent.mkdir(parents=True, exist_ok=True)
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(img, "JPEG", quality=90)
        # a soft map as CUB ships them: a blurry blob, grey levels 0..255 with every value
        yy, xx = np.mgrid[0:h, 0:w]
        blob = 255 * np.exp(-(((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 3)) ** 2))
        soft = np.clip(blob + rng.normal(0, 20, (h, w)), 0, 255).astype(np.uint8)
        seg = d / "segmentations" / Path(rel).with_suffix(".png")
        seg.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(soft, "L").save(seg, "PNG")
        assert 0 < np.count_nonzero(soft >= 128) < soft.size, image_id
    (d / "classes.txt").write_text("".join(f"{k} {v}\n" for k, v in CUB_CLASSES.items()))
    (d / "images.txt").write_text("".join(f"{k} {v[0]}\n" for k, v in CUB_IMAGES.items()))
    (d / "image_class_labels.txt").write_text(
        "".join(f"{k} {v[1]}\n" for k, v in CUB_IMAGES.items())
    )
    (d / "train_test_split.txt").write_text("".join(f"{k} {v[2]}\n" for k, v in CUB_IMAGES.items()))
    (d / "bounding_boxes.txt").write_text("".join(f"{k} 1.0 2.0 10.0 12.0\n" for k in CUB_IMAGES))
    (d / "README").write_text("CUB-200-2011\n")
    (root / "attributes.txt").write_text("1 has_bill_shape::curved\n")
    return d


def zip_tree(folder: Path, out: Path) -> Path:
    """A zip of the folder itself (its name is the archive's top folder), as people make one."""
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(folder.parent).as_posix())
    return out


# ---------------------------------------------------------------------------- helpers


def _stored_files() -> list[str]:
    """Every stored dataset file (the local folder or the object store, as configured)."""
    return get_storage().keys("datasets")


def _state(db) -> tuple:
    db.expire_all()
    counts = tuple(
        db.scalar(sa.select(sa.func.count()).select_from(t))
        for t in (Dataset, DatasetClass, ImageRow, Annotation, AnnotationRevision, User)
    )
    return counts, _stored_files()


def _import_dir(db, path: Path, name: str):
    return import_dataset(db, get_storage(), directory_entries(path), name=name)


def _images(db, dataset_id: int) -> list[ImageRow]:
    return list(
        db.scalars(
            sa.select(ImageRow).where(ImageRow.dataset_id == dataset_id).order_by(ImageRow.id)
        )
    )


def _class_names(db, dataset_id: int) -> list[str]:
    return list(
        db.scalars(
            sa.select(DatasetClass.name)
            .where(DatasetClass.dataset_id == dataset_id)
            .order_by(DatasetClass.index)
        )
    )


def _upload(client, headers, path: Path, name: str):
    return client.post(
        "/api/datasets/import",
        headers=headers,
        data={"name": name},
        files={"file": (path.name, path.read_bytes(), "application/zip")},
    )


# ---------------------------------------------------------------------------- CIFAR


def test_cifar10_zip_upload_keeps_pixels_split_and_classes(client, auth, db, tmp_path):
    d = cifar10_tree(tmp_path / "src")
    r = _upload(client, auth["researcher"], zip_tree(d, tmp_path / "cifar10.zip"), "cifar10")
    assert r.status_code == 201, r.text
    assert r.json()["num_images"] == 10 and r.json()["num_classes"] == 10
    ds_id = r.json()["id"]
    assert _class_names(db, ds_id) == CIFAR10_NAMES  # index = CIFAR's label
    rows = _images(db, ds_id)
    by_name = {row.filename: row for row in rows}
    storage = get_storage()
    for batch, split in (("data_batch_1", "train"), ("test_batch", "test")):
        data, labels, names = expected_cifar(d, batch)
        for i, fname in enumerate(names):
            row = by_name[f"{split}/{CIFAR10_NAMES[labels[i]]}/{fname}"]
            assert row.split == split and (row.width, row.height, row.mode) == (32, 32, "RGB")
            assert row.dataset_class.name == CIFAR10_NAMES[labels[i]]
            with Image.open(io.BytesIO(storage.get_bytes(row.storage_key))) as img:
                assert img.format == "PNG"
                pixels = np.asarray(img)
            expected = data[i].reshape(3, 32, 32).transpose(1, 2, 0)
            assert np.array_equal(pixels, expected), row.filename
    assert sorted(row.split for row in rows) == ["test"] * 4 + ["train"] * 6
    detail = client.get(f"/api/datasets/{ds_id}", headers=auth["researcher"]).json()
    assert detail["splits"] == {"train": 6, "test": 4}
    pixels = client.get(f"/api/images/{rows[0].id}/file", headers=auth["annotator"])
    assert pixels.status_code == 200 and Image.open(io.BytesIO(pixels.content)).size == (32, 32)


def test_cifar100_from_the_cli_uses_the_fine_labels(db, tmp_path, capsys):
    from backend.cli import main

    d = cifar100_tree(tmp_path)
    assert main(["import-dataset", str(d), "--name", "cifar100"]) == 0
    assert "imported dataset 'cifar100'" in capsys.readouterr().out
    ds = db.scalar(sa.select(Dataset).where(Dataset.name == "cifar100"))
    assert ds is not None
    assert _class_names(db, ds.id) == [f"fine_{i:02d}" for i in range(100)]
    rows = {row.filename: row for row in _images(db, ds.id)}
    for batch in ("train", "test"):
        data, labels, names = expected_cifar(d, batch)
        for i, fname in enumerate(names):
            row = rows[f"{batch}/fine_{labels[i]:02d}/{fname}"]
            assert row.split == batch
            stored = np.asarray(Image.open(io.BytesIO(get_storage().get_bytes(row.storage_key))))
            assert np.array_equal(stored, data[i].reshape(3, 32, 32).transpose(1, 2, 0))
    assert len(rows) == 8


def test_python3_pickles_of_cifar_load_too(tmp_path):
    """A CIFAR batch re-saved by Python 3 (protocol 2: bytes as _codecs.encode(..., latin1),
    numpy 2's global names) loads the same."""
    batch = cifar_batch(3, 10, 5, b"labels", "py3")
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(batch, protocol=2))
    loaded = load_pickle(Entry(PurePosixPath("data_batch_1"), path.read_bytes), "CIFAR-10")
    assert np.array_equal(loaded[b"data"], batch[b"data"])
    assert loaded[b"labels"] == batch[b"labels"]


class RunsCommand:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def test_a_pickle_that_runs_code_is_refused_without_running_it(client, auth, db, tmp_path):
    marker = tmp_path / "pwned"
    d = cifar10_tree(tmp_path / "src")
    evil = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [RunsCommand(f"touch {marker}")]}
    (d / "data_batch_1").write_bytes(pickle.dumps(evil, protocol=2))
    before = _state(db)
    r = _upload(client, auth["researcher"], zip_tree(d, tmp_path / "evil.zip"), "evil")
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert "data_batch_1 asks for posix.system, which a CIFAR-10 file never does" in detail
    assert detail.endswith("nothing was imported.")
    assert not marker.exists(), "the pickle's code ran"
    assert _state(db) == before
    # other ways out are closed too: builtins, codecs other than latin1, arrays built oddly
    objects = np.array([1, "a"], dtype=object)  # would unpickle arbitrary objects
    for hostile in (_Evaluates(), _CodecsOther(), _BigArray(), objects, _SetsState()):
        payload = pickle.dumps({b"data": hostile}, protocol=2)
        with pytest.raises(DomainError, match="asks for"):
            load_pickle(Entry(PurePosixPath("data_batch_1"), lambda p=payload: p), "CIFAR-10")


class _SetsState:
    """A dtype whose state is not a plain dtype's (subarrays, fields and flags are refused)."""

    def __reduce__(self):
        return (np.dtype, ("u1", False, True), {"__class__": "x"})


class _Evaluates:
    def __reduce__(self):
        return (eval, ("1 + 1",))


class _CodecsOther:
    def __reduce__(self):
        import _codecs

        return (_codecs.encode, ("text", "rot13"))


class _BigArray:
    def __reduce__(self):
        from numpy._core.multiarray import _reconstruct

        return (_reconstruct, (np.ndarray, (10**12,), b"b"))


# ---------------------------------------------------------------------------- CUB-200-2011


def test_cub_tree_keeps_split_classes_and_every_segmentation_as_a_mask(db, tmp_path):
    from backend.services.consensus import freeze_mask_set

    d = cub_tree(tmp_path)
    ds = _import_dir(db, tmp_path, "cub")  # the folder around CUB_200_2011, as the tarball has
    assert _class_names(db, ds.id) == list(CUB_CLASSES.values())
    rows = {row.filename: row for row in _images(db, ds.id)}
    assert set(rows) == {v[0] for v in CUB_IMAGES.values()}
    account = db.scalar(sa.select(User).where(User.username == "import:cub-200-2011"))
    assert account is not None and not account.is_active and account.role == "annotator"
    for rel, class_id, is_train, w, h in CUB_IMAGES.values():
        row = rows[rel]
        assert row.split == ("train" if is_train else "test")
        assert row.dataset_class.name == CUB_CLASSES[class_id]
        assert (row.width, row.height) == (w, h)
        assert get_storage().get_bytes(row.storage_key) == (d / "images" / rel).read_bytes()
        (ann,) = db.scalars(sa.select(Annotation).where(Annotation.image_id == row.id)).all()
        assert ann.annotator_id == account.id and ann.status == "accepted"
        (rev,) = ann.revisions
        assert rev.source == "import:cub" and (rev.width, rev.height) == (w, h)
        soft = np.asarray(Image.open(d / "segmentations" / Path(rel).with_suffix(".png")))
        assert np.array_equal(png_to_mask(rev.mask_bytes), soft >= 128)
        assert rev.area == np.count_nonzero(soft >= 128)
    mask_set, created = freeze_mask_set(
        db, ds, name="cub masks", statuses=["accepted"], min_annotators=1, min_agreement=None,
        created_by=None,
    )  # fmt: skip
    assert created and mask_set.num_images == 3


def test_cub_without_segmentations_imports_images_only(db, tmp_path):
    d = cub_tree(tmp_path)
    shutil.rmtree(d / "segmentations")
    ds = _import_dir(db, d, "cub-no-masks")
    assert len(_images(db, ds.id)) == 3
    assert db.scalar(sa.select(sa.func.count()).select_from(Annotation)) == 0


# ---------------------------------------------------------------------------- ImageNet style


def test_train_and_val_folders_make_the_split(db, tmp_path):
    src = tmp_path / "imagenet-mini"
    for split, n in (("train", 3), ("val", 2)):
        for wnid in ("n01440764", "n01443537"):
            folder = src / split / wnid
            folder.mkdir(parents=True)
            for i in range(n):
                Image.new("RGB", (20, 16), (30 * i, 90, 200)).save(folder / f"{i}.JPEG", "JPEG")
    archive = zip_tree(src, tmp_path / "in.zip").read_bytes()
    ds = import_dataset(db, get_storage(), zip_entries(archive), name="imagenet-mini")
    rows = _images(db, ds.id)
    assert sorted((row.filename.split("/")[0], row.split) for row in rows) == sorted(
        [("train", "train")] * 6 + [("val", "test")] * 4
    )
    assert _class_names(db, ds.id) == ["n01440764", "n01443537"]


# ---------------------------------------------------------------------------- malformed trees


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _rewrite_batch(path: Path, **changes) -> None:
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")
    batch.update({k.encode(): v for k, v in changes.items()})
    path.write_bytes(py2_pickle(batch))


def _replace_line(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def _resize_segmentation(d: Path) -> None:
    seg = d / "segmentations" / Path(CUB_IMAGES[2][0]).with_suffix(".png")
    Image.open(seg).resize((20, 20)).save(seg)


MALFORMED = {
    "truncated pickle": (cifar10_tree, lambda d: _truncate(d / "data_batch_1"), "truncated"),
    "wrong data shape": (
        cifar10_tree,
        lambda d: _rewrite_batch(d / "test_batch", data=np.zeros((4, 3000), np.uint8)),
        "N x 3072",
    ),
    "label out of range": (
        cifar10_tree,
        lambda d: _rewrite_batch(d / "data_batch_1", labels=[0, 1, 2, 10, 4, 5]),
        "label 10, outside the 10 classes",
    ),
    "labels and images disagree": (
        cifar10_tree,
        lambda d: _rewrite_batch(d / "data_batch_1", labels=[0, 1]),
        "has 6 images but 2 labels",
    ),
    "no test batch": (cifar10_tree, lambda d: (d / "test_batch").unlink(), "no test_batch"),
    "cifar-100 without meta names": (
        cifar100_tree,
        lambda d: (d / "meta").write_bytes(py2_pickle({b"coarse_label_names": [b"a"]})),
        "fine_label_names",
    ),
    "missing segmentation": (
        cub_tree,
        lambda d: (d / "segmentations" / Path(CUB_IMAGES[3][0]).with_suffix(".png")).unlink(),
        "is missing",
    ),
    "segmentation of another size": (cub_tree, _resize_segmentation, "is 20x20 pixels"),
    "unknown class id": (
        cub_tree,
        lambda d: _replace_line(d / "image_class_labels.txt", "3 2\n", "3 7\n"),
        "class id 7, which classes.txt does not list",
    ),
    "split line for a missing image": (
        cub_tree,
        lambda d: (d / "train_test_split.txt").write_text(
            (d / "train_test_split.txt").read_text() + "4 1\n"
        ),
        "train_test_split.txt has a line for image 4",
    ),
    "broken jpeg": (
        cub_tree,
        lambda d: _truncate(d / "images" / CUB_IMAGES[1][0]),
        "is not an image that can be decoded",
    ),
    "image not in images.txt": (
        cub_tree,
        lambda d: _replace_line(d / "images.txt", f"2 {CUB_IMAGES[2][0]}\n", ""),
        "image_class_labels.txt has a line for image 2",
    ),
    "both val and test": (
        lambda root: _split_tree(root, ("train", "val", "test")),
        lambda d: None,
        "both a test/ and a val/ folder",
    ),
}


def _split_tree(root: Path, splits: tuple[str, ...]) -> Path:
    d = root / "tree"
    for split in splits:
        (d / split / "cls").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(d / split / "cls" / "0.png")
    return d


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_trees_are_refused_and_leave_nothing(db, tmp_path, case):
    build, spoil, phrase = MALFORMED[case]
    # a dataset already there, so "nothing changed" is checked against a non-empty state
    _import_dir(db, cifar10_tree(tmp_path / "good", n_train=2, n_test=1), "already-there")
    before = _state(db)
    d = build(tmp_path / "bad")
    spoil(d)
    archive = zip_tree(d, tmp_path / "bad.zip").read_bytes()
    with pytest.raises(DomainError) as from_zip:  # what the browser's upload runs
        import_dataset(db, get_storage(), zip_entries(archive), name="bad")
    detail = str(from_zip.value)
    assert phrase in detail and detail.endswith("."), detail
    assert 400 <= http_status(from_zip.value) < 500
    assert _state(db) == before
    with pytest.raises(DomainError) as from_dir:  # what the CLI runs: the same sentence
        _import_dir(db, d, "bad-dir")
    assert str(from_dir.value) == detail
    assert _state(db) == before


def test_the_api_answers_a_malformed_tree_with_a_4xx_sentence(client, auth, db, tmp_path):
    """One case per format through the real endpoint (the others above run the same code)."""
    _import_dir(db, cifar10_tree(tmp_path / "good", n_train=2, n_test=1), "already-there")
    before = _state(db)
    for case in ("label out of range", "unknown class id", "both val and test"):
        build, spoil, phrase = MALFORMED[case]
        d = build(tmp_path / case)
        spoil(d)
        r = _upload(client, auth["researcher"], zip_tree(d, tmp_path / f"{case}.zip"), "bad")
        assert r.status_code == 400, r.text
        assert phrase in r.json()["detail"], r.json()
        assert _state(db) == before


def test_cli_refuses_a_malformed_tree_with_exit_code_2(db, tmp_path, capsys):
    from backend.cli import main

    d = cub_tree(tmp_path)
    _resize_segmentation(d)
    before = _state(db)
    assert main(["import-dataset", str(d), "--name", "cub-bad"]) == 2
    err = capsys.readouterr().err  # the progress bar, then the sentence
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: The segmentation segmentations/"), err
    assert "Traceback" not in err and last.endswith("nothing was imported.")
    assert _state(db) == before
