"""Celery task "worker.generate_stimuli": the images of a perception study, attacked by each
chosen run's checkpoint at each epsilon of the study.

The task is an adapter: it reads the study through the backend's data layer and calls the
training library's PGD. Idempotent: a stimulus whose row exists is skipped, so a redelivered
task continues where the previous delivery stopped. Progress is written after every image.
"""

from __future__ import annotations

import hashlib
import io
import logging
import secrets
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from PIL import Image as PILImage
from sqlalchemy.orm import Session

from backend.core.queue import STIMULI_TASK
from backend.core.storage import LocalStorage, get_storage
from backend.db import get_sessionmaker
from backend.models import Image, Stimulus, Study, TrainingRun
from backend.services.studies import (
    StimulusSpec,
    eps_key,
    padded_size,
    source_array,
    stimuli_by_key,
    stimulus_plan,
)

_logger = logging.getLogger(__name__)


def stimulus_seed(study_seed: int, spec: StimulusSpec) -> int:
    """A per-stimulus seed, derived (not drawn) so that it is the same on every delivery."""
    text = f"{study_seed}:{spec.purpose}:{spec.run_id}:{spec.image_id}:{eps_key(spec.eps_255)}"
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") & 0x7FFFFFFF


def encode_png(pixels: np.ndarray) -> bytes:
    """Lossless PNG of an H x W (grey) or H x W x 3 uint8 array; no metadata chunks, fixed
    settings, so equal pixels give equal bytes."""
    mode = "L" if pixels.ndim == 2 else "RGB"
    buf = io.BytesIO()
    PILImage.fromarray(pixels, mode).save(buf, "PNG", compress_level=6)
    return buf.getvalue()


def load_source(storage: LocalStorage, image: Image, in_channels: int, size: int) -> np.ndarray:
    """The source image as the model sees it: C x H x W uint8 (converted and resized the way
    the training library loads data)."""
    mode = "L" if in_channels == 1 else "RGB"
    a = source_array(storage.get_bytes(image.storage_key), mode, (size, size))
    return a[None] if a.ndim == 2 else a.transpose(2, 0, 1)


def attack_pixels(
    model: torch.nn.Module,
    src: np.ndarray,
    label: int,
    eps_255: float,
    attack: dict[str, Any],
    seed: int,
) -> np.ndarray:
    """PGD L-inf at eps_255/255 around src (C x H x W uint8), rounded to 8 bits and clipped
    so that every pixel stays within floor(eps_255) grey levels of the source."""
    from worker.sipat import pgd_attack

    if eps_255 <= 0:
        return src.copy()
    eps = eps_255 / 255
    x = torch.tensor(src, dtype=torch.float32).div(255).unsqueeze(0)
    y = torch.tensor([label])
    gen = torch.Generator().manual_seed(seed)
    x_adv = pgd_attack(
        model,
        x,
        y,
        eps,
        float(attack["alpha_ratio"]) * eps,
        int(attack["steps"]),
        random_start=bool(attack.get("random_start", True)),
        generator=gen,
    )
    q = torch.round(x_adv[0] * 255).to(torch.int32).numpy()
    budget = int(np.floor(eps_255 + 1e-6))
    s = src.astype(np.int32)
    return np.clip(q, np.maximum(s - budget, 0), np.minimum(s + budget, 255)).astype(np.uint8)


def to_hwc(chw: np.ndarray) -> np.ndarray:
    return chw[0] if chw.shape[0] == 1 else chw.transpose(1, 2, 0)


def _model_label(image: Image, classes: list[str] | None) -> int:
    """The model's class index of an image: by class name when the checkpoint lists them."""
    name = image.dataset_class.name
    if classes and name in classes:
        return classes.index(name)
    return image.dataset_class.index


def generate_stimuli(
    db: Session,
    storage: LocalStorage,
    study_id: int,
    *,
    device: str = "cpu",
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Make every missing stimulus of the study; returns how many were made now.
    Marks the study ready at the end, or failed (with the error) if anything goes wrong."""
    from worker.sipat import load_model_from_checkpoint
    from worker.sipat.checkpoint import load_checkpoint

    study = db.get(Study, study_id)
    if study is None:
        raise LookupError(f"study {study_id} does not exist")
    try:
        specs = stimulus_plan(study)
        have = stimuli_by_key(db, study.id)
        total = len(specs)
        done = sum(1 for s in specs if s.key in have)
        made = 0
        seed0 = int(study.config.get("seed", 0))
        attack = study.config["attack"]
        runs = study.config["run_ids"]
        ref_run = runs[0]
        models: dict[int, tuple[torch.nn.Module, dict[str, Any]]] = {}

        def model_of(run_id: int) -> tuple[torch.nn.Module, dict[str, Any]]:
            if run_id not in models:
                run = db.get(TrainingRun, run_id)
                if run is None or not run.checkpoint_key:
                    raise ValueError(f"run {run_id} has no checkpoint")
                path = storage.path(run.checkpoint_key) / "final.pt"
                if not path.exists():
                    raise ValueError(f"run {run_id}: {run.checkpoint_key}/final.pt is missing")
                spec = load_checkpoint(path, device)["model_spec"]
                models[run_id] = (load_model_from_checkpoint(path, device), spec)
            return models[run_id]

        sizes = {(model_of(r)[1]["image_size"], model_of(r)[1]["in_channels"]) for r in runs}
        if len(sizes) != 1:
            raise ValueError("the runs' models take different image sizes")
        size, channels = sizes.pop()
        # group by (run, image) so progress moves per image
        groups: dict[tuple[int | None, int], list[StimulusSpec]] = {}
        for s in specs:
            groups.setdefault((s.run_id, s.image_id), []).append(s)
        for (run_id, image_id), group in groups.items():
            todo = [s for s in group if s.key not in have]
            if not todo:
                continue
            image = db.get(Image, image_id)
            if image is None:
                raise ValueError(f"image {image_id} no longer exists")
            src = load_source(storage, image, channels, size)
            model, spec = model_of(run_id if run_id is not None else ref_run)
            label = _model_label(image, spec.get("classes"))
            for s in todo:
                seed = stimulus_seed(seed0, s)
                pixels = attack_pixels(model, src, label, s.eps_255, attack, seed)
                png = encode_png(to_hwc(pixels))
                key = f"studies/{study.id}/stimuli/{secrets.token_hex(16)}.png"
                storage.put_bytes(key, png)
                row = Stimulus(
                    study_id=study.id,
                    public_id=secrets.token_urlsafe(18),
                    run_id=s.run_id,
                    source_image_id=image_id,
                    epsilon=s.eps_255 / 255,
                    attack=attack["name"],
                    seed=seed,
                    purpose=s.purpose,
                    storage_key=key,
                    sha256=hashlib.sha256(png).hexdigest(),
                )
                db.add(row)
                have[s.key] = row
                made += 1
                done += 1
            study.progress = done / total
            db.commit()
            if on_progress is not None:
                on_progress(study.progress)
        # every stimulus is served at one padded size so sizes do not tell clean from changed
        longest = max(
            len(storage.get_bytes(s.storage_key)) for s in stimuli_by_key(db, study.id).values()
        )
        cfg = dict(study.config)
        cfg["stimulus_bytes"] = padded_size(longest)
        cfg["image_size"] = [size, size]
        study.config = cfg
        study.progress = 1.0
        study.state = "ready"
        study.error = None
        db.commit()
        _logger.info("study %s: %d stimuli made, %d in all", study.id, made, total)
        return made
    except Exception as exc:
        db.rollback()
        _logger.exception("stimulus generation for study %s failed", study_id)
        study = db.get(Study, study_id)
        if study is not None:
            study.state = "failed"
            study.error = f"{type(exc).__name__}: {exc}"
            db.commit()
        raise


def _register() -> None:
    from worker.celery_app import app

    @app.task(name=STIMULI_TASK, bind=True)
    def generate_stimuli_task(self: Any, study_id: int) -> dict[str, Any]:
        session = get_sessionmaker()()
        try:
            study = session.get(Study, study_id)
            if study is None:
                _logger.warning("study %s vanished before its stimuli were made", study_id)
                return {"study_id": study_id, "made": 0}
            if study.state == "ready":
                return {"study_id": study_id, "made": 0}
            made = generate_stimuli(session, get_storage(), study_id)
            return {"study_id": study_id, "made": made}
        finally:
            session.close()


_register()
