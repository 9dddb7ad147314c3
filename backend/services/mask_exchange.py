"""Masks in and out: PNG zips and COCO RLE JSON (export and import), and CUB-200-2011 style
soft segmentations (import). The training library's dataset folder is written by the worker
(worker/training_export.py).

Imported masks belong to a pseudo-annotator account "import:<name>" (role annotator, never able
to log in), so consensus and mask sets can use them like anyone's masks. An import checks every
file before it writes anything: a refused import stores nothing.
"""

from __future__ import annotations

import io
import json
import logging
import re
import secrets
import zipfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid, TooLarge, Unreadable
from backend.models import (
    Annotation,
    AnnotationRevision,
    Dataset,
    DatasetClass,
    Image,
    MaskSet,
    User,
    utcnow,
)
from backend.services.archives import entry_cap, read_capped
from backend.services.consensus import load_masks
from backend.services.masks.codec import (
    bbox,
    mask_sha256,
    mask_to_png,
    png_to_mask,
    rle_decode,
    rle_encode,
)

if TYPE_CHECKING:
    from PIL.ImageFile import ImageFile

_logger = logging.getLogger(__name__)

IMPORT_PREFIX = "import:"
_SAFE_NAME = re.compile(r"^[A-Za-z0-9._-]{1,50}$")


def _stem(filename: str) -> str:
    return str(PurePosixPath(filename.replace("\\", "/")).with_suffix(""))


def _safe_dir(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "_"


def dataset_images(db: Session, dataset: Dataset) -> list[Image]:
    """The dataset's images, by id."""
    return list(
        db.scalars(select(Image).where(Image.dataset_id == dataset.id).order_by(Image.id)).all()
    )


# ---------------------------------------------------------------------------- export


@dataclass
class ExportMask:
    image: Image
    mask: np.ndarray  # bool, or uint8 consensus levels for a mask set
    annotator: str
    revision: int


def _collect(
    db: Session,
    dataset: Dataset,
    *,
    statuses: list[str],
    annotator_id: int | None,
    mask_set: MaskSet | None,
) -> list[ExportMask]:
    images = {im.id: im for im in dataset_images(db, dataset)}
    out: list[ExportMask] = []
    if mask_set is not None:
        if mask_set.dataset_id != dataset.id:
            raise Invalid("The mask set belongs to another dataset.")
        for item in sorted(mask_set.items, key=lambda i: i.image_id):
            grey = np.asarray(_open_png(item.consensus_png))
            out.append(ExportMask(images[item.image_id], grey, "consensus", mask_set.id))
        return out
    names = dict(db.execute(select(User.id, User.username)).all())
    revisions = dict(
        db.execute(
            select(AnnotationRevision.id, AnnotationRevision.revision)
            .join(Annotation, Annotation.id == AnnotationRevision.annotation_id)
            .join(Image, Image.id == Annotation.image_id)
            .where(Image.dataset_id == dataset.id)
        ).all()
    )
    for image_id, im in sorted(load_masks(db, dataset_id=dataset.id, statuses=statuses).items()):
        for m in im.masks:
            if annotator_id is not None and m.annotator_id != annotator_id:
                continue
            out.append(
                ExportMask(
                    images[image_id],
                    m.mask,
                    names.get(m.annotator_id, "?"),
                    revisions[m.revision_id],
                )
            )
    return out


def _open_png(data: bytes) -> ImageFile:
    from PIL import Image as PILImage

    return PILImage.open(io.BytesIO(data))


def export_png_zip(
    db: Session,
    dataset: Dataset,
    *,
    statuses: list[str],
    annotator_id: int | None = None,
    mask_set: MaskSet | None = None,
) -> bytes:
    """A zip of 8-bit grey PNGs named after the images' files: <annotator>/<path>.png with
    0/255 per mask, or consensus/<path>.png (0..255 = mean) for a mask set; plus masks.json."""
    from PIL import Image as PILImage

    entries = _collect(db, dataset, statuses=statuses, annotator_id=annotator_id, mask_set=mask_set)
    buf = io.BytesIO()
    index = []
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for e in entries:
            name = f"{_safe_dir(e.annotator)}/{_stem(e.image.filename)}.png"
            grey = e.mask if e.mask.dtype == np.uint8 else np.where(e.mask, 255, 0).astype(np.uint8)
            png = io.BytesIO()
            PILImage.fromarray(grey, "L").save(png, "PNG")
            zf.writestr(name, png.getvalue())
            index.append(
                {
                    "file": name,
                    "image_id": e.image.id,
                    "image_file": e.image.filename,
                    "annotator": e.annotator,
                    "revision": e.revision,
                }
            )
        zf.writestr("masks.json", json.dumps({"dataset": dataset.name, "masks": index}, indent=1))
    return buf.getvalue()


def export_coco(
    db: Session,
    dataset: Dataset,
    *,
    statuses: list[str],
    annotator_id: int | None = None,
    mask_set: MaskSet | None = None,
    threshold: float = 0.5,
) -> dict[str, Any]:
    """COCO JSON with RLE segmentations (pycocotools decodes them). A mask set exports its
    consensus binarised at threshold. category_id = class index + 1 (COCO counts from 1)."""
    entries = _collect(db, dataset, statuses=statuses, annotator_id=annotator_id, mask_set=mask_set)
    classes = {
        c.id: c
        for c in db.scalars(select(DatasetClass).where(DatasetClass.dataset_id == dataset.id)).all()
    }
    cut = int(np.ceil(threshold * 255))
    images, annotations = {}, []
    for n, e in enumerate(entries, start=1):
        im = e.image
        images[im.id] = {
            "id": im.id,
            "file_name": im.filename,
            "width": im.width,
            "height": im.height,
        }
        mask = e.mask if e.mask.dtype == bool else e.mask >= cut
        annotations.append(
            {
                "id": n,
                "image_id": im.id,
                "segmentation": rle_encode(mask),
                "area": int(np.count_nonzero(mask)),
                "bbox": bbox(mask),
                "iscrowd": 0,
                "category_id": classes[im.class_id].index + 1,
                "attributes": {"annotator": e.annotator, "revision": e.revision},
            }
        )
    return {
        "info": {"description": f"Salient-region masks of {dataset.name}"},
        "images": list(images.values()),
        "annotations": annotations,
        "categories": [
            {"id": c.index + 1, "name": c.name}
            for c in sorted(classes.values(), key=lambda c: c.index)
        ],
    }


def export_masks(
    db: Session,
    dataset: Dataset,
    *,
    fmt: str,
    statuses: list[str],
    annotator_id: int | None,
    mask_set: MaskSet | None,
    threshold: float,
) -> tuple[bytes, str, str]:
    """A dataset's masks (or a mask set's consensus) as a download: its bytes, media type and
    file name. `fmt` is "png" (a zip of PNGs) or "coco" (COCO RLE JSON)."""
    stem = f"{_safe_dir(dataset.name)}-masks" + (f"-set{mask_set.id}" if mask_set else "")
    if fmt == "png":
        data = export_png_zip(
            db, dataset, statuses=statuses, annotator_id=annotator_id, mask_set=mask_set
        )
        return data, "application/zip", f"{stem}.zip"
    doc = export_coco(
        db,
        dataset,
        statuses=statuses,
        annotator_id=annotator_id,
        mask_set=mask_set,
        threshold=threshold,
    )
    return json.dumps(doc).encode(), "application/json", f"{stem}.json"


# ---------------------------------------------------------------------------- import


class ImageMatcher:
    """Finds the image a file name refers to: by its path without extension (the longest
    trailing part of the name that names exactly one image), else by a numeric image id."""

    def __init__(self, images: list[Image]) -> None:
        self.by_id = {im.id: im for im in images}
        self.by_suffix: dict[str, list[Image]] = {}
        for im in images:
            parts = PurePosixPath(_stem(im.filename)).parts
            for k in range(1, len(parts) + 1):
                self.by_suffix.setdefault("/".join(parts[-k:]), []).append(im)

    def match(self, name: str, match_by: str = "auto") -> Image:
        parts = PurePosixPath(_stem(name)).parts
        if match_by in ("auto", "filename"):
            for k in range(len(parts), 0, -1):
                found = self.by_suffix.get("/".join(parts[-k:]), [])
                if len(found) == 1:
                    return found[0]
                if len(found) > 1:
                    raise Invalid(
                        f"The file {name!r} matches several images; name it by its full path."
                    )
        if match_by in ("auto", "id") and parts and parts[-1].isdigit():
            image = self.by_id.get(int(parts[-1]))
            if image is not None:
                return image
        raise Invalid(f"No image of this dataset matches the file {name!r}.")


def import_account(db: Session, name: str) -> User:
    """The pseudo-annotator "import:<name>" that owns imported masks (created if needed)."""
    if not _SAFE_NAME.match(name):
        raise Invalid("The import name must be 1-50 letters, digits, dots, dashes or underscores.")
    username = IMPORT_PREFIX + name
    user = db.scalar(select(User).where(User.username == username))
    if user is None:
        # Not a usable password hash and inactive: the account can never log in.
        user = User(
            username=username,
            password_hash="!import-" + secrets.token_hex(8),
            role="annotator",
            is_active=False,
        )
        db.add(user)
        db.flush()
    return user


@dataclass(frozen=True)
class EncodedMask:
    """A binary mask as a revision stores it: its PNG, area and content hash."""

    png: bytes
    area: int
    sha256: str

    @classmethod
    def of(cls, mask: np.ndarray) -> EncodedMask:
        return cls(mask_to_png(mask), int(np.count_nonzero(mask)), mask_sha256(mask))


def imported_revision(
    image: Image, mask: EncodedMask, revision: int, source: str, save_id: str, now: datetime
) -> AnnotationRevision:
    """One revision of an imported binary mask of `image`."""
    return AnnotationRevision(
        revision=revision,
        save_id=save_id,
        mask_format="png",
        mask_bytes=mask.png,
        width=image.width,
        height=image.height,
        area=mask.area,
        sha256=mask.sha256,
        active_ms=0,
        source=source,
        created_at=now,
    )


def _check_size(mask: np.ndarray, image: Image, name: str) -> None:
    if mask.shape != (image.height, image.width):
        raise Invalid(
            f"The mask {name!r} is {mask.shape[1]}x{mask.shape[0]} pixels but its "
            f"image is {image.width}x{image.height}."
        )


def parse_png_zip(
    data: bytes | BinaryIO, images: list[Image], *, soft: bool, match_by: str
) -> dict[int, tuple[Image, np.ndarray, str]]:
    """Decode every PNG of a zip (other files are ignored) into {image id: (image, mask, name)}.
    Each entry is decompressed in steps and refused past MAX_ARCHIVE_ENTRY_BYTES (as the
    dataset import does): a small zip cannot expand to gigabytes in memory."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data) if isinstance(data, bytes) else data)
    except zipfile.BadZipFile as exc:
        raise Unreadable("The upload is not a valid zip archive.") from exc
    matcher = ImageMatcher(images)
    found: dict[int, tuple[Image, np.ndarray, str]] = {}
    with zf:
        infos = [i for i in zf.infolist() if not i.is_dir()]
        if sum(i.file_size for i in infos) > 2 * 1024**3:
            raise TooLarge("The archive expands to more than the allowed size.")
        for info in infos:
            path = PurePosixPath(info.filename)
            if (
                path.suffix.lower() != ".png"
                or path.name.startswith(".")
                or "__MACOSX" in path.parts
            ):
                continue
            image = matcher.match(info.filename, match_by)
            if image.id in found:
                raise Invalid(
                    f"Two files are for the same image: {found[image.id][2]!r} and "
                    f"{info.filename!r}."
                )
            raw = read_capped(zf, info)
            mask = png_to_mask(raw, soft=soft, name=f"The mask {info.filename!r}")
            _check_size(mask, image, info.filename)
            found[image.id] = (image, mask, info.filename)
    if not found:
        raise Invalid("The archive holds no PNG mask.")
    return found


def _declared_size(seg: dict[str, Any], n: int) -> tuple[int, int]:
    """The (height, width) an RLE segmentation declares, read before anything is decoded."""
    try:
        h, w = (int(v) for v in seg["size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise Invalid(f"Annotation {n} has no RLE size [height, width].") from exc
    return h, w


def parse_coco(
    data: bytes | BinaryIO, images: list[Image], match_by: str
) -> dict[int, tuple[Image, np.ndarray, str]]:
    """Decode a COCO JSON with RLE segmentations; several annotations of one image are united.
    The file is held to MAX_ARCHIVE_ENTRY_BYTES, and an annotation whose declared size is not
    its image's is refused before it is decoded."""
    if not isinstance(data, bytes):
        data = _read_at_most(data, entry_cap())
    try:
        doc = json.loads(data)
        coco_images = {int(i["id"]): i for i in doc["images"]}
        annotations = list(doc["annotations"])
    except (ValueError, KeyError, TypeError) as exc:
        raise Invalid("The file is not COCO JSON with images and annotations.") from exc
    matcher = ImageMatcher(images)
    found: dict[int, tuple[Image, np.ndarray, str]] = {}
    for n, ann in enumerate(annotations):
        try:
            coco_image = coco_images[int(ann["image_id"])]
            seg = ann["segmentation"]
        except (KeyError, TypeError, ValueError) as exc:
            raise Invalid(f"Annotation {n} names no known image or has no segmentation.") from exc
        if not isinstance(seg, dict):
            raise Invalid(f"Annotation {n} is not an RLE segmentation (polygons are not accepted).")
        label = str(coco_image.get("file_name") or coco_image["id"])
        if match_by == "id":
            image = matcher.match(str(coco_image["id"]), "id")
        else:
            try:
                image = matcher.match(label, "filename")
            except Invalid:
                if match_by == "filename":
                    raise
                image = matcher.match(str(coco_image["id"]), "id")
        height, width = _declared_size(seg, n)
        if (height, width) != (image.height, image.width):
            raise Invalid(
                f"The mask {label!r} is {width}x{height} pixels but its "
                f"image is {image.width}x{image.height}."
            )
        mask = rle_decode(seg)
        _check_size(mask, image, label)
        if image.id in found:
            found[image.id] = (image, found[image.id][1] | mask, label)
        else:
            found[image.id] = (image, mask, label)
    if not found:
        raise Invalid("The COCO file holds no annotation.")
    return found


def _read_at_most(stream: BinaryIO, cap: int) -> bytes:
    """A stream's bytes, refused (TooLarge) the moment they pass `cap`."""
    data = stream.read(cap + 1)
    if len(data) > cap:
        raise TooLarge(f"The file is larger than {cap // 2**20} MiB; nothing was imported.")
    return data


def import_masks(
    db: Session,
    dataset: Dataset,
    data: bytes | BinaryIO,
    *,
    fmt: str,
    name: str,
    status: str = "accepted",
    match_by: str = "auto",
) -> tuple[User, list[int]]:
    """Import masks as revisions of the pseudo-annotator import:<name>; all or nothing.

    fmt: "png" (zip of binary PNGs), "coco" (COCO JSON with RLE), or "cub" (zip of soft grey
    segmentations, binarised at >= 128, as CUB-200-2011 ships them). `data` is the upload's
    bytes or its (seekable) file, read entry by entry.
    """
    if fmt not in ("png", "coco", "cub"):
        raise Invalid("format must be png, coco or cub.")
    if status not in ("submitted", "accepted"):
        raise Invalid("status must be submitted or accepted.")
    if match_by not in ("auto", "filename", "id"):
        raise Invalid("match_by must be auto, filename or id.")
    images = dataset_images(db, dataset)
    if fmt == "coco":
        found = parse_coco(data, images, match_by)
    else:
        found = parse_png_zip(data, images, soft=fmt == "cub", match_by=match_by)
    # encoded before the first write: the write lock (SQLite) is held for the rows only
    encoded = {image_id: EncodedMask.of(mask) for image_id, (_, mask, _) in found.items()}
    db.commit()  # ends the read of the dataset's images
    try:
        user = import_account(db, name)
        now = utcnow()
        batch = secrets.token_hex(6)
        for image_id, (image, _, _) in sorted(found.items()):
            ann = db.scalar(
                select(Annotation).where(
                    Annotation.image_id == image_id, Annotation.annotator_id == user.id
                )
            )
            if ann is None:
                ann = Annotation(
                    image_id=image_id,
                    annotator_id=user.id,
                    status=status,
                    latest_revision=0,
                    created_at=now,
                )
                db.add(ann)
                db.flush()
            ann.latest_revision += 1
            ann.status = status
            ann.submitted_at = now
            ann.updated_at = now
            revision = imported_revision(
                image,
                encoded[image_id],
                ann.latest_revision,
                f"import:{fmt}",
                f"import-{batch}-{image_id}",
                now,
            )
            revision.annotation_id = ann.id
            db.add(revision)
        db.commit()
    except BaseException:
        db.rollback()
        raise
    _logger.info(
        "imported %d %s masks into dataset %s as %s", len(found), fmt, dataset.id, user.username
    )
    return user, sorted(found)
