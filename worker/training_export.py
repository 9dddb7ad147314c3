"""The training library's dataset folder, written from the app's data for a run
(write_training_export; worker/training_tasks.py calls it before training). The format is
`sipat-dataset/1` (docs/training.md).
"""

from __future__ import annotations

import io
import json
import os
import shutil
from pathlib import Path, PurePosixPath

from PIL import Image as PILImage
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.storage import ContentCache, Storage
from backend.models import Dataset, MaskSet, MaskSetItem
from backend.services.mask_exchange import dataset_images


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def write_training_export(
    db: Session,
    source: Storage | ContentCache,
    dataset_id: int,
    mask_set_id: int | None,
    out_dir: Path,
) -> Path:
    """Write the training library's dataset folder and return the manifest's path.

    out_dir/manifest.json: {"format": "sipat-dataset/1", "dataset", "classes" (names by index),
    "mask_set": {"id", "hash"} | null, "images": [{"id", "file", "label", "split", "mask"}]};
    images/<id>.<ext> hard-linked (or copied) from the worker's cache of the store (by
    content hash: a second export of the same images downloads nothing; from a local-folder
    store, its own files); masks/<id>.png the mask set's consensus as 8-bit grey (0..255 =
    consensus in [0, 1]), for images in the mask set.
    """
    cache = (
        source
        if isinstance(source, ContentCache)
        else ContentCache(source, get_settings().worker_cache_dir)
    )
    dataset = db.get(Dataset, dataset_id)
    if dataset is None:
        raise ValueError(f"dataset {dataset_id} does not exist")
    mask_set = None
    if mask_set_id is not None:
        mask_set = db.get(MaskSet, mask_set_id)
        if mask_set is None or mask_set.dataset_id != dataset_id:
            raise ValueError(f"mask set {mask_set_id} does not belong to dataset {dataset_id}")
    out_dir = Path(out_dir)
    (out_dir / "images").mkdir(parents=True, exist_ok=True)
    classes = sorted(dataset.classes, key=lambda c: c.index)
    index_of = {c.id: c.index for c in classes}
    items: dict[int, MaskSetItem] = {}
    if mask_set is not None:
        items = {it.image_id: it for it in mask_set.items}
        (out_dir / "masks").mkdir(exist_ok=True)
    records = []
    for image in dataset_images(db, dataset):
        ext = PurePosixPath(image.storage_key).suffix or ".png"
        rel = f"images/{image.id}{ext}"
        _link_or_copy(cache.by_hash(image.storage_key, image.sha256), out_dir / rel)
        mask_rel = None
        item = items.get(image.id)
        if item is not None:
            mask_rel = f"masks/{image.id}.png"
            _write_grey(out_dir / mask_rel, item.consensus_png)
        records.append(
            {
                "id": image.id,
                "file": rel,
                "label": index_of[image.class_id],
                "split": image.split,
                "mask": mask_rel,
            }
        )
    manifest = {
        "format": "sipat-dataset/1",
        "dataset": dataset.name,
        "classes": [c.name for c in classes],
        "mask_set": {"id": mask_set.id, "hash": mask_set.hash} if mask_set else None,
        "images": records,
    }
    path = out_dir / "manifest.json"
    tmp = out_dir / ".manifest.json.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)  # a reader never sees half a manifest
    return path


def _write_grey(path: Path, png: bytes) -> None:
    img: PILImage.Image = PILImage.open(io.BytesIO(png))
    if img.mode != "L":
        img = img.convert("L")
        buf = io.BytesIO()
        img.save(buf, "PNG")
        png = buf.getvalue()
    path.write_bytes(png)
