"""Importing an image-classification dataset from a zip or a directory: an ImageFolder tree,
CIFAR-10 / CIFAR-100 (python version) or CUB-200-2011 with its segmentations, recognised by
layout (the readers are in backend.services.dataset_formats).

Everything is checked before anything is stored, and all of it is stored in one transaction:
a rejected import leaves no rows and no files.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import stat
import uuid
import warnings
import zipfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import numpy as np
from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.errors import Conflict, Invalid, TooLarge, Unreadable
from backend.core.storage import Storage
from backend.models import (
    Annotation,
    Dataset,
    DatasetClass,
    Image,
    TrainingRun,
    User,
    utcnow,
)
from backend.services.archives import read_capped
from backend.services.dataset_formats import Entry, Item, Layout, read_layout
from backend.services.mask_exchange import EncodedMask, import_account, imported_revision
from backend.services.masks.aids import check_proposal_source
from backend.services.masks.codec import png_to_mask

_logger = logging.getLogger(__name__)

IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
IGNORED_DIRS = {"__MACOSX"}
# rows written per database round trip while storing
_CHUNK = 500

_Entry = Entry  # the name other modules (demo_data) import


def _is_ignored(path: PurePosixPath) -> bool:
    return (
        any(part in IGNORED_DIRS or part.startswith(".") for part in path.parts[:-1])
        or path.name in IGNORED_NAMES
        or path.name.startswith("._")
    )


def _safe_relative(name: str) -> PurePosixPath:
    normalized = name.replace("\\", "/")
    pure = PurePosixPath(normalized)
    if (
        normalized.startswith("/")
        or (len(normalized) > 1 and normalized[1] == ":")
        or ".." in pure.parts
    ):
        raise Unreadable(
            f"The archive entry {name!r} points outside the dataset folder; nothing was imported."
        )
    return pure


def zip_entries(data: bytes | Path | BinaryIO) -> Iterator[_Entry]:
    settings = get_settings()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except zipfile.BadZipFile as exc:
        raise Unreadable("The upload is not a valid zip archive.") from exc
    infos = zf.infolist()
    total = sum(info.file_size for info in infos)
    if total > settings.max_upload_bytes * 4:
        raise TooLarge("The archive expands to more than the allowed size; nothing was imported.")
    for info in infos:
        path = _safe_relative(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise Unreadable(
                f"The archive entry {info.filename!r} is a symbolic link; nothing was imported."
            )
        if info.is_dir() or _is_ignored(path):
            continue

        def read(info: zipfile.ZipInfo = info) -> bytes:
            return read_capped(zf, info, settings.max_archive_entry_bytes)

        yield _Entry(path, read)


def directory_entries(root: Path) -> Iterator[_Entry]:
    root = root.resolve()
    if not root.is_dir():
        raise Unreadable(f"{root} is not a directory.")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = PurePosixPath(full.relative_to(root).as_posix())
            if _is_ignored(rel) or full.is_symlink():
                continue
            yield _Entry(rel, full.read_bytes)


@dataclass
class _Checked:
    item: Item
    width: int
    height: int
    mode: str
    ext: str
    sha256: str | None  # of the file's bytes; None for an array (encoded when stored)


def _probe(path: str, data: bytes) -> tuple[int, int, str, str]:
    """(width, height, PIL mode, format) of an image file that decodes whole, or a refusal."""
    settings = get_settings()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > settings.max_image_pixels:
                    raise Unreadable(
                        f"{path} has {width}x{height} pixels, more than the limit of "
                        f"{settings.max_image_pixels}; nothing was imported."
                    )
                fmt = img.format or "PNG"
                img.load()
                return width, height, img.mode, fmt
    except Unreadable:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise Unreadable(
            f"{path} is too large to decode safely (more than the pixel limit); "
            "nothing was imported."
        ) from exc
    except Exception as exc:  # any decoder failure means "not an image"
        raise Unreadable(
            f"{path} is not an image that can be decoded; nothing was imported."
        ) from exc


def _read_mask(item: Item, width: int, height: int) -> np.ndarray:
    """The item's segmentation binarised at >= 128, checked to have its image's size."""
    assert item.mask is not None
    name = str(item.mask.path)
    try:
        mask = png_to_mask(item.mask.read(), soft=True, name=f"The segmentation {name}")
    except Invalid as exc:
        raise Unreadable(f"{exc} Nothing was imported.") from exc
    if mask.shape != (height, width):
        raise Unreadable(
            f"The segmentation {name} is {mask.shape[1]}x{mask.shape[0]} pixels but its image "
            f"{item.filename} is {width}x{height}; nothing was imported."
        )
    return mask


def _check(item: Item) -> _Checked:
    """Decode the item whole (and its mask) and keep only what storing it needs."""
    if item.pixels is not None:
        height, width = item.pixels.shape[:2]
        checked = _Checked(item, width, height, "RGB", "png", None)
    else:
        assert item.file is not None
        data = item.file.read()
        width, height, mode, fmt = _probe(str(item.file.path), data)
        ext = {"JPEG": "jpg", "PNG": "png"}.get(fmt, fmt.lower())
        checked = _Checked(item, width, height, mode, ext, hashlib.sha256(data).hexdigest())
    if item.mask is not None:
        _read_mask(item, width, height)
    return checked


def _file_bytes(c: _Checked) -> bytes:
    """The bytes to store: the file as it came, or an array encoded as PNG."""
    if c.item.pixels is not None:
        buf = io.BytesIO()
        PILImage.fromarray(np.ascontiguousarray(c.item.pixels, dtype=np.uint8)).save(buf, "PNG")
        return buf.getvalue()
    assert c.item.file is not None
    data = c.item.file.read()
    if hashlib.sha256(data).hexdigest() != c.sha256:
        raise Unreadable(
            f"{c.item.file.path} changed while it was being imported; nothing was imported."
        )
    return data


def _mask_annotation(
    image: Image, mask: EncodedMask, account: User, source: str, batch: str, now: datetime
) -> Annotation:
    """An accepted mask of the import account, with its one revision."""
    revision = imported_revision(image, mask, 1, source, f"import-{batch}-{image.id}", now)
    return Annotation(
        image_id=image.id,
        annotator_id=account.id,
        status="accepted",
        latest_revision=1,
        submitted_at=now,
        created_at=now,
        updated_at=now,
        revisions=[revision],
    )


def stratified_test_ids(
    classes: Sequence[str], hashes: Sequence[str], test_fraction: float
) -> set[int]:
    """Which images (by index) form the test split: round(n * test_fraction) images in all,
    shared out over the classes in proportion to their sizes (each class gets the whole part
    of its share, the remaining images go to the classes with the largest remainders, ties
    to the class first by name), and within a class the images first by content hash.
    Deterministic: the same files always split the same way. With at least one test image
    per class where the share allows, a class is never all train by chance."""
    by_class: dict[str, list[int]] = {}
    for i, name in enumerate(classes):
        by_class.setdefault(name, []).append(i)
    target = round(len(classes) * test_fraction)
    quotas = {c: len(ids) * test_fraction for c, ids in by_class.items()}
    counts = {c: int(q) for c, q in quotas.items()}
    rest = target - sum(counts.values())
    for c in sorted(by_class, key=lambda c: (-(quotas[c] - counts[c]), c))[: max(rest, 0)]:
        counts[c] += 1
    chosen: set[int] = set()
    for c, ids in by_class.items():
        chosen.update(sorted(ids, key=lambda i: hashes[i])[: counts[c]])
    return chosen


@dataclass(frozen=True)
class _Stored:
    """An image whose file is in storage, ready for its row."""

    checked: _Checked
    key: str
    sha256: str
    split: str
    mask: EncodedMask | None


def _store_rows(
    db: Session,
    name: str,
    description: str,
    created_by: User | None,
    class_names: list[str],
    layout: Layout,
    files: list[_Stored],
    batch: str,
) -> Dataset:
    """Every row of an import (the dataset, its classes, images and imported masks) in one
    transaction, committed: all of the import, or (on any error) none of it. Only inserts:
    the write lock is held for them alone (~1 s per 20,000 images on SQLite)."""
    dataset = Dataset(
        name=name, description=description, created_by_id=created_by and created_by.id
    )
    classes = {n: DatasetClass(name=n, index=i) for i, n in enumerate(class_names)}
    dataset.classes = list(classes.values())
    db.add(dataset)
    db.flush()
    account = import_account(db, layout.mask_account) if layout.mask_account else None
    now = utcnow()
    for start in range(0, len(files), _CHUNK):
        chunk = files[start : start + _CHUNK]
        rows = [
            Image(
                dataset_id=dataset.id,
                class_id=classes[f.checked.item.class_name].id,
                filename=f.checked.item.filename,
                storage_key=f.key,
                width=f.checked.width,
                height=f.checked.height,
                mode=f.checked.mode,
                sha256=f.sha256,
                split=f.split,
            )
            for f in chunk
        ]
        db.add_all(rows)
        db.flush()  # the images' ids, for their masks
        if account is not None:
            for f, row in zip(chunk, rows, strict=True):
                if f.mask is not None:
                    db.add(_mask_annotation(row, f.mask, account, layout.mask_source, batch, now))
    digest = hashlib.sha256()
    for line in sorted(f"{f.sha256}:{f.checked.item.class_name}:{f.split}\n" for f in files):
        digest.update(line.encode())
    dataset.content_hash = digest.hexdigest()
    db.commit()
    return dataset


def import_dataset(
    db: Session,
    storage: Storage,
    entries: Iterator[Entry],
    *,
    name: str,
    description: str = "",
    created_by: User | None = None,
    test_fraction: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    """Check every image (and mask) of the tree, write their files, then store every row in
    one short transaction (_store_rows).

    The format is recognised by the tree's layout (dataset_formats.read_layout). An official
    split (train/test or train/val folders, CIFAR's batches, CUB's train_test_split.txt) is
    kept; a flat ImageFolder tree gets a test share of test_fraction, stratified by class
    (stratified_test_ids).
    progress(done, total) is called once per image checked and once per image stored.
    """
    name = name.strip()
    if not name:
        raise Unreadable("The dataset needs a name.")
    if db.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
        raise Conflict(f"A dataset named {name!r} already exists.")
    settings = get_settings()
    layout = read_layout(list(entries))
    total = len(layout.items)
    if total > settings.max_images_per_import:
        raise Unreadable(
            f"The dataset has {total} images, more than the limit of "
            f"{settings.max_images_per_import}."
        )
    # pass 1: everything is decoded and checked; only sizes and hashes are kept in memory
    checked: list[_Checked] = []
    for i, item in enumerate(layout.items):
        checked.append(_check(item))
        if progress:
            progress(i + 1, 2 * total)
    class_names = layout.classes or sorted({c.item.class_name for c in checked})

    db.commit()  # the name check's read ends: no transaction stays open from here to pass 3

    # pass 2: the files, and the masks encoded, before any row is written (so no database
    # lock is held while the disk works)
    batch = uuid.uuid4().hex[:12]
    written: list[str] = []
    try:
        files: list[_Stored] = []
        for c in checked:
            data = _file_bytes(c)
            sha = hashlib.sha256(data).hexdigest()
            key = f"datasets/import-{batch}/{sha[:16]}-{len(written)}.{c.ext}"
            storage.put_bytes(key, data)
            written.append(key)
            mask = None
            if layout.mask_account and c.item.mask is not None:
                mask = EncodedMask.of(_read_mask(c.item, c.width, c.height))
            files.append(_Stored(c, key, sha, c.item.split or "", mask))
            if progress:
                progress(total + len(written), 2 * total)
        # no official split: a test share stratified by class
        flat = [i for i, f in enumerate(files) if not f.split]
        test = stratified_test_ids(
            [files[i].checked.item.class_name for i in flat],
            [files[i].sha256 for i in flat],
            test_fraction,
        )
        for n, i in enumerate(flat):
            files[i] = replace(files[i], split="test" if n in test else "train")
        dataset = _store_rows(db, name, description, created_by, class_names, layout, files, batch)
    except BaseException:
        db.rollback()
        for key in written:
            storage.delete(key)
        raise
    masks = sum(1 for f in files if f.mask is not None)
    _logger.info(
        "imported %s dataset %s: %d images, %d classes, %d masks",
        layout.format,
        name,
        total,
        len(class_names),
        masks,
    )
    return dataset


def update_dataset(db: Session, dataset: Dataset, changes: dict[str, object]) -> Dataset:
    """Set the given fields (description, annotator instructions, annotators per image,
    proposals; the request's schema says which may change). Proposals are null or "off" (off),
    "saliency", or "run:{id}" of a finished run of this dataset."""
    if "proposals" in changes:
        source = changes["proposals"]
        source = None if source in (None, "off") else str(source)
        run_id = source[4:] if source and source.startswith("run:") else ""
        run = db.get(TrainingRun, int(run_id)) if run_id.isdigit() and len(run_id) < 10 else None
        check_proposal_source(source, dataset, run)
        changes = {**changes, "proposals": source}
    for field, value in changes.items():
        setattr(dataset, field, value)
    db.commit()
    return dataset


def classes_by_id(dataset: Dataset, class_id: int) -> str:
    for c in dataset.classes:
        if c.id == class_id:
            return c.name
    raise KeyError(class_id)


def dataset_counts(db: Session, dataset_ids: list[int]) -> dict[int, tuple[int, int]]:
    """(number of classes, number of images) per dataset, in two queries."""
    images = dict(
        db.execute(
            select(Image.dataset_id, func.count())
            .where(Image.dataset_id.in_(dataset_ids))
            .group_by(Image.dataset_id)
        ).all()
    )
    classes = dict(
        db.execute(
            select(DatasetClass.dataset_id, func.count())
            .where(DatasetClass.dataset_id.in_(dataset_ids))
            .group_by(DatasetClass.dataset_id)
        ).all()
    )
    return {i: (classes.get(i, 0), images.get(i, 0)) for i in dataset_ids}
