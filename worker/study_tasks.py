"""Celery task "worker.generate_stimuli": the images of a perception study, attacked by each
chosen run's checkpoint at each epsilon of the study.

The task is an adapter, load - call - record: it claims the study's generation and loads each
run's final model (backend/services/study_lifecycle.py owns the study's state); the studies
service (backend.services.studies.stimuli) says what is missing and stores each stimulus
with the study's progress; the training library (worker.sipat.stimuli) attacks and quantises
the pixels, and the service encodes them as the uncompressed PNG every participant is served
(stimuli.encode_stimulus). Then each run's model's robust accuracy is measured at the study's
own epsilons on the study's main images (sipat.stimuli.robust_accuracy_at), so that the
human and model curves share their points, and under the original AutoAttack
(sipat.stimuli.autoattack_accuracy_at, through the library's robustness.autoattack, what a
run's final evaluation reports) on a stated subset of the main images, with PGD on the same
images beside it; the lifecycle marks the study ready, or failed with the error.
Idempotent: a stimulus whose row exists is skipped, so a redelivered task
continues where the previous delivery stopped. Progress is written after every image.
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
from backend.models import TrainingRun
from backend.services import study_lifecycle as lifecycle
from backend.services.studies import stimuli
from worker.celery_app import task

_logger = logging.getLogger(__name__)


class RunModels:
    """Each run's final model with its spec, loaded once for the whole study from this host's
    copy of the checkpoint (a local store: its own file)."""

    def __init__(self, db: Session, storage: Storage, device: str) -> None:
        self.db, self.storage, self.device = db, storage, device
        self._models: dict[int, tuple[torch.nn.Module, dict[str, Any]]] = {}

    def get(self, run_id: int) -> tuple[torch.nn.Module, dict[str, Any]]:
        from worker.sipat import load_model_from_checkpoint
        from worker.sipat.checkpoint import load_checkpoint

        if run_id not in self._models:
            run = self.db.get(TrainingRun, run_id)
            if run is None or not run.checkpoint_key:
                raise ValueError(f"run {run_id} has no checkpoint")
            key = f"{run.checkpoint_key}/final.pt"
            try:
                path = ContentCache(self.storage, get_settings().worker_cache_dir).by_key(key)
            except FileNotFoundError as exc:
                raise ValueError(f"run {run_id}: {key} is missing") from exc
            spec = load_checkpoint(path, self.device)["model_spec"]
            self._models[run_id] = (load_model_from_checkpoint(path, self.device), spec)
        return self._models[run_id]

    def input_shape(self, run_ids: list[int]) -> tuple[int, int]:
        """(image size, channels) that every run's model takes."""
        shapes = {(self.get(r)[1]["image_size"], self.get(r)[1]["in_channels"]) for r in run_ids}
        if len(shapes) != 1:
            raise ValueError("the runs' models take different image sizes")
        size, channels = shapes.pop()
        return int(size), int(channels)


def make_stimuli(
    db: Session,
    storage: Storage,
    generation: stimuli.Generation,
    models: RunModels,
    shape: tuple[int, int],
    on_progress: Callable[[float], None] | None = None,
) -> None:
    """Every missing stimulus of the plan, attacked by its run's model (a clean one: the first
    run's labels) and quantised; each source image's stimuli stored with the progress."""
    from worker.sipat.stimuli import attack_and_quantise, to_chw, to_hwc

    size, channels = shape
    attack = generation.study.config["attack"]
    first_run = int(generation.study.config["run_ids"][0])
    for run_id, image_id, todo in generation.groups():  # progress moves per image
        image = stimuli.source_image(db, image_id)
        src = to_chw(stimuli.source_pixels(storage, image, channels, size))
        model, spec = models.get(run_id if run_id is not None else first_run)
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


def measure_model_accuracy(
    db: Session,
    storage: Storage,
    generation: stimuli.Generation,
    models: RunModels,
    shape: tuple[int, int],
) -> None:
    """Each run's robust accuracy at the study's own epsilons, on the images people judge
    (the model's curve beside the human one), recorded in the study's config."""
    from worker.sipat.stimuli import robust_accuracy_at, to_chw

    study = generation.study
    size, channels = shape
    attack = study.config["attack"]
    image_ids = stimuli.model_accuracy_images(study)
    sources = [stimuli.source_image(db, i) for i in image_ids]
    batch = np.stack([to_chw(stimuli.source_pixels(storage, im, channels, size)) for im in sources])
    restarts = stimuli.MODEL_EVAL_RESTARTS
    per_run = {}
    for run_id in study.config["run_ids"]:
        model, spec = models.get(run_id)
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
            device=models.device,
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


def measure_model_autoattack(
    db: Session,
    storage: Storage,
    generation: stimuli.Generation,
    models: RunModels,
    shape: tuple[int, int],
) -> None:
    """Each run's robust accuracy under the original AutoAttack at the study's own epsilons
    (stimuli.autoattack_epsilons: at most 8 of a QUEST+ ladder), on a stated subset of the
    main images (stimuli.autoattack_images), with PGD's (the study's attack, as
    measure_model_accuracy runs it) on the same images beside it; recorded in the study's
    config."""
    from worker.sipat.stimuli import autoattack_accuracy_at, robust_accuracy_at, to_chw

    study = generation.study
    size, channels = shape
    attack = study.config["attack"]
    image_ids = stimuli.autoattack_images(study)
    sources = [stimuli.source_image(db, i) for i in image_ids]
    batch = np.stack([to_chw(stimuli.source_pixels(storage, im, channels, size)) for im in sources])
    eps = stimuli.autoattack_epsilons(study)
    per_run: dict[int, dict[str, Any]] = {}
    settings: dict[str, Any] = {}
    for run_id in study.config["run_ids"]:
        model, spec = models.get(run_id)
        labels = [stimuli.model_label(im, spec.get("classes")) for im in sources]
        with torch.no_grad():
            probe = torch.from_numpy(batch[:1].copy()).float().div(255).to(models.device)
            n_classes = int(model.eval()(probe).shape[1])
        seed = generation.seed + run_id
        aa = autoattack_accuracy_at(
            model, batch, labels, eps, n_classes=n_classes, seed=seed, device=models.device
        )
        pgd = robust_accuracy_at(
            model,
            batch,
            labels,
            eps,
            steps=int(attack["steps"]),
            alpha_ratio=float(attack["alpha_ratio"]),
            restarts=stimuli.MODEL_EVAL_RESTARTS,
            seed=seed,
            device=models.device,
        )
        points = [
            {**p, "pgd_accuracy": q["accuracy"]} for p, q in zip(aa["points"], pgd, strict=True)
        ]
        per_run[run_id] = {"seed": seed, "points": points, "warnings": aa["warnings"]}
        settings = aa["settings"]
    stimuli.record_model_autoattack(db, study, per_run, settings=settings, n_images=len(image_ids))


def generate_stimuli(
    db: Session,
    storage: Storage,
    study_id: int,
    *,
    device: str = "cpu",
    on_progress: Callable[[float], None] | None = None,
) -> int:
    """Make every missing stimulus of the study; returns how many were made now (0 when the
    study is gone or its generation has ended). Marks the study ready at the end, or failed
    (with the error, then raised again) if anything goes wrong."""
    study = lifecycle.claim_generation(db, study_id)
    if study is None:
        return 0
    try:
        models = RunModels(db, storage, device)
        shape = models.input_shape(study.config["run_ids"])
        if study.design == "label":  # one image named per trial (issue 26)
            from worker.label_stimuli import make_label_stimuli

            made = make_label_stimuli(db, storage, study, models, shape, on_progress)
            lifecycle.finish_generation(
                db, study, stimuli.served_config(db, storage, study, shape[0])
            )
            return made
        generation = stimuli.begin_generation(db, study)
        make_stimuli(db, storage, generation, models, shape, on_progress)
        if not stimuli.has_model_accuracy(study):
            measure_model_accuracy(db, storage, generation, models, shape)
        if not stimuli.has_model_autoattack(study) and stimuli.autoattack_images(study):
            measure_model_autoattack(db, storage, generation, models, shape)
        lifecycle.finish_generation(db, study, stimuli.served_config(db, storage, study, shape[0]))
    except Exception as exc:
        _logger.exception("stimulus generation for study %s failed", study_id)
        lifecycle.fail_generation(db, study_id, f"{type(exc).__name__}: {exc}")
        raise
    _logger.info(
        "study %s: %d stimuli made, %d in all", study_id, generation.made, generation.total
    )
    return generation.made


@task(name=STIMULI_TASK)
def generate_stimuli_task(study_id: int) -> dict[str, Any]:
    """Make a study's stimuli (idempotent: a redelivery goes on where the last one stopped)."""
    with get_sessionmaker()() as db:
        made = generate_stimuli(db, get_storage(), int(study_id))
    return {"study_id": study_id, "made": made}
