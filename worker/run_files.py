"""A run's files on a worker host: its working folder, what it fetches from the store, and
what it writes back.

On the local-folder store (the embedded default) the working folder IS the store's folder
runs/<id>/, as it always was: nothing is copied. On an object store (STORAGE_URL=s3://...)
the worker shares no disk with the API: it works in its own cache folder
(WORKER_CACHE_DIR/runs/<id>/), restores the run's last checkpoint from the store before
training (resume on any host), uploads checkpoint.pt after every epoch and everything else
at the end. An upload that is killed leaves no object behind (S3 shows an object only once
its upload completes), so resume never picks up half a checkpoint.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.storage import ContentCache, Storage
from backend.models import Image
from backend.services import runs as runs_service

CHECKPOINT, FINAL, METRICS = "checkpoint.pt", "final.pt", "metrics.json"


def _local_or_cache(storage: Storage, key: str) -> Path:
    local = storage.local_path(key)
    return local if local is not None else get_settings().worker_cache_dir / key


def out_dir(storage: Storage, run_id: int) -> Path:
    """Where the run trains (checkpoints, metrics, salience pictures)."""
    return _local_or_cache(storage, runs_service.run_out_key(run_id))


def data_dir(storage: Storage, run_id: int) -> Path:
    """Where the run's dataset export lives on this host."""
    return _local_or_cache(storage, runs_service.run_data_key(run_id))


def restore(storage: Storage, run_id: int, folder: Path) -> bool:
    """Before training on an object store: the working folder made anew from the store,
    the source of truth (its last checkpoint, and a finished run's results); whatever an
    earlier attempt left on this host is dropped. True when there is a checkpoint to
    resume from."""
    key = runs_service.run_out_key(run_id)
    if storage.local_path(key) is None:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for name in (CHECKPOINT, METRICS, FINAL):
            if storage.exists(f"{key}/{name}"):
                storage.download(f"{key}/{name}", folder / name)
    return (folder / CHECKPOINT).is_file()


def publish_checkpoint(storage: Storage, run_id: int, folder: Path) -> None:
    """After an epoch: the new checkpoint.pt to the store (a no-op on the local folder)."""
    key = runs_service.run_out_key(run_id)
    if storage.local_path(key) is None and (folder / CHECKPOINT).is_file():
        storage.put_file(f"{key}/{CHECKPOINT}", folder / CHECKPOINT)


def publish(storage: Storage, run_id: int, folder: Path) -> None:
    """At the end: every file of the run's folder to the store, final.pt last (the run's
    results are complete in the store once final.pt is there)."""
    key = runs_service.run_out_key(run_id)
    if storage.local_path(key) is not None:
        return
    files = sorted(
        (p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".")),
        key=lambda p: p.name == FINAL,
    )
    for path in files:
        storage.put_file(f"{key}/{path.relative_to(folder).as_posix()}", path)


def write_export(db: Session, storage: Storage, cache: ContentCache, run: Any) -> Path:
    """The run's dataset export (worker/training_export.py), written once into this host's
    data folder (a temp folder renamed into place). On an object store the manifest and the
    masks also go to the store, so that a later task on another host can rebuild it."""
    from worker.training_export import write_training_export

    target = data_dir(storage, run.id)
    key = runs_service.run_data_key(run.id)
    on_store = storage.local_path(key) is None
    # locally the export is the store's own folder, written once; on an object store this
    # host's copy is made again at every start (images are links into the cache: cheap)
    if not on_store and (target / "manifest.json").is_file():
        return target
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    write_training_export(db, cache, run.dataset_id, run.mask_set_id, tmp)
    if on_store:
        for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
            rel = path.relative_to(tmp).as_posix()
            if not rel.startswith("images/"):  # images are in the store already
                storage.put_file(f"{key}/{rel}", path)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def read_export(db: Session, storage: Storage, cache: ContentCache, run_id: int) -> Path:
    """A finished run's export on this host: as trained, or rebuilt from the store's manifest
    and masks with the images from the cache (by content hash). Raises FileNotFoundError
    when the store has no export of the run."""
    target = data_dir(storage, run_id)
    if (target / "manifest.json").is_file():
        return target
    key = runs_service.run_data_key(run_id)
    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    storage.download(f"{key}/manifest.json", tmp / "manifest.json")
    for mask_key in storage.keys(f"{key}/masks"):
        storage.download(mask_key, tmp / "masks" / mask_key.rsplit("/", 1)[1])
    manifest = json.loads((tmp / "manifest.json").read_text())
    ids = [int(e["id"]) for e in manifest["images"]]
    images = {im.id: im for im in db.query(Image).filter(Image.id.in_(ids))} if ids else {}
    for entry in manifest["images"]:
        image = images[int(entry["id"])]
        link = tmp / entry["file"]
        link.parent.mkdir(parents=True, exist_ok=True)
        source = cache.by_hash(image.storage_key, image.sha256)
        try:
            os.link(source, link)
        except OSError:
            shutil.copyfile(source, link)
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


def final_checkpoint(cache: ContentCache, run: Any) -> Path:
    """A finished run's final.pt on this host (its own file on the local folder, else a
    cached copy: final checkpoints never change)."""
    key = run.checkpoint_key or runs_service.run_out_key(run.id)
    try:
        return cache.by_key(f"{key}/{FINAL}")
    except FileNotFoundError as exc:
        raise ValueError(f"run {run.id} has no final model ({FINAL} is missing)") from exc
