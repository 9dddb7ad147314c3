"""Celery task "worker.generate_stimuli": the images of a perception study, attacked by each
chosen run's checkpoint at each epsilon of the study.

The task is an adapter: the studies service (backend.services.studies.stimuli) says what is
missing and stores each stimulus with the study's progress; the training library
(worker.sipat.stimuli) attacks and quantises the pixels, and the service encodes them as the
uncompressed PNG every participant is served (stimuli.encode_stimulus). Then each run's
model's robust accuracy is measured at the study's own epsilons on the study's main images
(sipat.stimuli.robust_accuracy_at), so that the human and model curves share their points.
Idempotent: a stimulus whose row exists is skipped, so a redelivered task continues where
the previous delivery stopped. Progress is written after every image.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.queue import STIMULI_TASK
from backend.core.storage import ContentCache, Storage, get_storage
from backend.db import get_sessionmaker
from backend.models import Study, TrainingRun
from backend.services.studies import stimuli

_logger = logging.getLogger(__name__)


def generate_stimuli(
    db: Session,
    storage: Storage,
    study_id: int,
    *,
    device: str = "cpu",
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Make every missing stimulus of the study; returns how many were made now.
    Marks the study ready at the end, or failed (with the error) if anything goes wrong."""
    from worker.sipat import load_model_from_checkpoint
    from worker.sipat.checkpoint import load_checkpoint
    from worker.sipat.stimuli import attack_and_quantise, robust_accuracy_at, to_chw, to_hwc

    study = db.get(Study, study_id)
    if study is None:
        raise LookupError(f"study {study_id} does not exist")
    try:
        generation = stimuli.begin_generation(db, study)
        attack = study.config["attack"]
        runs = study.config["run_ids"]
        ref_run = runs[0]
        # one model per run, loaded once for the whole study
        models: dict[int, tuple[torch.nn.Module, dict[str, Any]]] = {}

        def model_of(run_id: int) -> tuple[torch.nn.Module, dict[str, Any]]:
            if run_id not in models:
                run = db.get(TrainingRun, run_id)
                if run is None or not run.checkpoint_key:
                    raise ValueError(f"run {run_id} has no checkpoint")
                try:  # this host's copy of the final model (a local store: its own file)
                    path = ContentCache(storage, get_settings().worker_cache_dir).by_key(
                        f"{run.checkpoint_key}/final.pt"
                    )
                except FileNotFoundError as exc:
                    raise ValueError(
                        f"run {run_id}: {run.checkpoint_key}/final.pt is missing"
                    ) from exc
                spec = load_checkpoint(path, device)["model_spec"]
                models[run_id] = (load_model_from_checkpoint(path, device), spec)
            return models[run_id]

        sizes = {(model_of(r)[1]["image_size"], model_of(r)[1]["in_channels"]) for r in runs}
        if len(sizes) != 1:
            raise ValueError("the runs' models take different image sizes")
        size, channels = sizes.pop()
        for run_id, image_id, todo in generation.groups():  # progress moves per image
            image = stimuli.source_image(db, image_id)
            src = to_chw(stimuli.source_pixels(storage, image, channels, size))
            model, spec = model_of(run_id if run_id is not None else ref_run)
            label = stimuli.model_label(image, spec.get("classes"))
            for s in todo:
                seed = stimuli.stimulus_seed(generation.seed, s)
                pixels = attack_and_quantise(
                    model,
                    src,
                    label,
                    s.eps_255,
                    steps=int(attack["steps"]),
                    alpha_ratio=float(attack["alpha_ratio"]),
                    random_start=bool(attack.get("random_start", True)),
                    seed=seed,
                )
                png = stimuli.encode_stimulus(to_hwc(pixels))
                stimuli.store_stimulus(db, storage, generation, s, png, seed)
            progress = stimuli.record_progress(db, generation)
            if on_progress is not None:
                on_progress(progress)
        if not stimuli.has_model_accuracy(study):
            # the model's curve at the study's own epsilons, on the images people judge
            image_ids = stimuli.model_accuracy_images(study)
            sources = [stimuli.source_image(db, i) for i in image_ids]
            batch = np.stack(
                [to_chw(stimuli.source_pixels(storage, im, channels, size)) for im in sources]
            )
            restarts = stimuli.MODEL_EVAL_RESTARTS
            per_run = {}
            for run_id in runs:
                model, spec = model_of(run_id)
                labels = [stimuli.model_label(im, spec.get("classes")) for im in sources]
                per_run[run_id] = robust_accuracy_at(
                    model,
                    batch,
                    labels,
                    stimuli.model_accuracy_epsilons(study),
                    steps=int(attack["steps"]),
                    alpha_ratio=float(attack["alpha_ratio"]),
                    restarts=restarts,
                    seed=generation.seed + run_id,
                    device=device,
                )
            stimuli.record_model_accuracy(
                db,
                study,
                per_run,
                n_images=len(image_ids),
                steps=int(attack["steps"]),
                restarts=restarts,
                alpha_ratio=float(attack["alpha_ratio"]),
                quantised=True,
            )
        stimuli.finish_generation(db, storage, study, size)
        _logger.info(
            "study %s: %d stimuli made, %d in all", study.id, generation.made, generation.total
        )
        return generation.made
    except Exception as exc:
        db.rollback()
        _logger.exception("stimulus generation for study %s failed", study_id)
        stimuli.fail_generation(db, study_id, exc)
        raise


def _register() -> None:
    from worker.celery_app import app

    @app.task(name=STIMULI_TASK)
    def generate_stimuli_task(study_id: int) -> dict[str, Any]:
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
