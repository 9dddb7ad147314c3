"""Importing an image-classification dataset (ImageFolder tree) from a zip or a directory.

Everything is checked before anything is stored: a rejected import leaves no rows and no files.
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from PIL import Image as PILImage
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.storage import LocalStorage
from backend.models import Dataset, DatasetClass, Image, User

_logger = logging.getLogger(__name__)

IGNORED_NAMES = {".DS_Store", "Thumbs.db", "desktop.ini"}
IGNORED_DIRS = {"__MACOSX"}
SPLIT_DIRS = ("train", "test")


class ImportError_(ValueError):
    """An import refused for a reason the user can fix; the message is a sentence."""

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass
class _Entry:
    path: PurePosixPath  # relative, already checked not to escape
    read: Callable[[], bytes]


@dataclass
class _Decoded:
    path: PurePosixPath
    class_name: str
    split: str | None
    data: bytes
    width: int
    height: int
    mode: str
    fmt: str
    sha256: str


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
        raise ImportError_(
            f"The archive entry {name!r} points outside the dataset folder; nothing was imported."
        )
    return pure


def zip_entries(data: bytes | Path | BinaryIO) -> Iterator[_Entry]:
    settings = get_settings()
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)  # noqa: SIM115
    except zipfile.BadZipFile as exc:
        raise ImportError_("The upload is not a valid zip archive.") from exc
    infos = zf.infolist()
    total = sum(info.file_size for info in infos)
    if total > settings.max_upload_bytes * 4:
        raise ImportError_(
            "The archive expands to more than the allowed size; nothing was imported.", 413
        )
    for info in infos:
        path = _safe_relative(info.filename)
        mode = info.external_attr >> 16
        if stat.S_ISLNK(mode):
            raise ImportError_(
                f"The archive entry {info.filename!r} is a symbolic link; nothing was imported."
            )
        if info.is_dir() or _is_ignored(path):
            continue

        def read(info: zipfile.ZipInfo = info) -> bytes:
            try:
                return zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise ImportError_(
                    f"The archive entry {info.filename!r} is damaged; nothing was imported."
                ) from exc

        yield _Entry(path, read)


def directory_entries(root: Path) -> Iterator[_Entry]:
    root = root.resolve()
    if not root.is_dir():
        raise ImportError_(f"{root} is not a directory.")
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            full = Path(dirpath) / name
            rel = PurePosixPath(full.relative_to(root).as_posix())
            if _is_ignored(rel) or full.is_symlink():
                continue
            yield _Entry(rel, full.read_bytes)


def _strip_wrapper(entries: list[_Entry]) -> list[_Entry]:
    """A zip of a folder holds one top-level directory around the tree: look inside it."""
    tops = {e.path.parts[0] for e in entries}
    if (
        len(tops) == 1
        and all(len(e.path.parts) >= 3 for e in entries)
        and next(iter(tops)) not in SPLIT_DIRS
    ):
        return [_Entry(PurePosixPath(*e.path.parts[1:]), e.read) for e in entries]
    return entries


def _decode(entry: _Entry, class_name: str, split: str | None) -> _Decoded:
    settings = get_settings()
    data = entry.read()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", PILImage.DecompressionBombWarning)
            with PILImage.open(io.BytesIO(data)) as img:
                width, height = img.size
                if width * height > settings.max_image_pixels:
                    raise ImportError_(
                        f"{entry.path} has {width}x{height} pixels, more than the limit of "
                        f"{settings.max_image_pixels}; nothing was imported."
                    )
                fmt = img.format or "PNG"
                img.load()
                mode = img.mode
    except ImportError_:
        raise
    except (PILImage.DecompressionBombError, PILImage.DecompressionBombWarning) as exc:
        raise ImportError_(
            f"{entry.path} is too large to decode safely (more than the pixel limit); "
            "nothing was imported."
        ) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "not an image"
        raise ImportError_(
            f"{entry.path} is not an image that can be decoded; nothing was imported."
        ) from exc
    return _Decoded(
        entry.path,
        class_name,
        split,
        data,
        width,
        height,
        mode,
        fmt,
        hashlib.sha256(data).hexdigest(),
    )


def _classify(entries: list[_Entry]) -> list[tuple[_Entry, str, str | None]]:
    entries = _strip_wrapper(entries)
    if not entries:
        raise ImportError_("The dataset is empty: no image files were found.")
    has_splits = any(e.path.parts[0] in SPLIT_DIRS and len(e.path.parts) >= 3 for e in entries)
    out: list[tuple[_Entry, str, str | None]] = []
    for e in entries:
        parts = e.path.parts
        if has_splits:
            if parts[0] not in SPLIT_DIRS or len(parts) != 3:
                raise ImportError_(
                    f"{e.path} is not inside train/<class>/ or test/<class>/; "
                    "the tree must have one folder per class."
                )
            out.append((e, parts[1], parts[0]))
        else:
            if len(parts) != 2:
                raise ImportError_(
                    f"{e.path} is not inside a class folder; the tree must have one folder "
                    "per class with the images directly inside."
                )
            out.append((e, parts[0], None))
    if len({c for _, c, _ in out}) < 1:
        raise ImportError_("The dataset has no class folders.")
    return out


def _split_for(sha256: str, test_fraction: float) -> str:
    # Deterministic: the same image always falls on the same side.
    return "test" if int(sha256[:8], 16) / 0xFFFFFFFF < test_fraction else "train"


def import_dataset(
    db: Session,
    storage: LocalStorage,
    entries: Iterator[_Entry],
    *,
    name: str,
    description: str = "",
    created_by: User | None = None,
    test_fraction: float = 0.2,
    progress: Callable[[int, int], None] | None = None,
) -> Dataset:
    name = name.strip()
    if not name:
        raise ImportError_("The dataset needs a name.")
    if db.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
        raise ImportError_(f"A dataset named {name!r} already exists.", 409)
    settings = get_settings()
    classified = _classify(list(entries))
    if len(classified) > settings.max_images_per_import:
        raise ImportError_(
            f"The dataset has {len(classified)} files, more than the limit of "
            f"{settings.max_images_per_import}."
        )
    decoded: list[_Decoded] = []
    for i, (entry, class_name, split) in enumerate(classified):
        decoded.append(_decode(entry, class_name, split))
        if progress:
            progress(i + 1, len(classified))

    class_names = sorted({d.class_name for d in decoded})
    batch = uuid.uuid4().hex[:12]
    written: list[str] = []
    try:
        dataset = Dataset(
            name=name, description=description, created_by_id=created_by and created_by.id
        )
        classes = {n: DatasetClass(name=n, index=i) for i, n in enumerate(class_names)}
        dataset.classes = list(classes.values())
        db.add(dataset)
        db.flush()
        rows = []
        for d in decoded:
            ext = {"JPEG": "jpg", "PNG": "png"}.get(d.fmt, d.fmt.lower())
            key = f"datasets/{dataset.id}/{batch}/{d.sha256[:16]}-{len(written)}.{ext}"
            storage.put_bytes(key, d.data)
            written.append(key)
            rows.append(
                Image(
                    dataset_id=dataset.id,
                    class_id=classes[d.class_name].id,
                    filename=str(d.path),
                    storage_key=key,
                    width=d.width,
                    height=d.height,
                    mode=d.mode,
                    sha256=d.sha256,
                    split=d.split or _split_for(d.sha256, test_fraction),
                )
            )
        db.add_all(rows)
        digest = hashlib.sha256()
        for sha, label, split in sorted(
            (r.sha256, classes_by_id(dataset, r.class_id), r.split) for r in rows
        ):
            digest.update(f"{sha}:{label}:{split}\n".encode())
        dataset.content_hash = digest.hexdigest()
        db.commit()
    except BaseException:
        db.rollback()
        for key in written:
            storage.path(key).unlink(missing_ok=True)
        raise
    _logger.info("imported dataset %s: %d images, %d classes", name, len(rows), len(class_names))
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
