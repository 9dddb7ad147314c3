"""Celery task "worker.inequality_evaluation": the IGD / Duan inequality tests of finished runs
on one common set of test images (worker.sipat.inequality), for the compare page.

A thin adapter, load - call - record: it claims the evaluation and loads each run's final
model and the first run's test split (from the dataset export the run trained on,
runs/<id>/data); the library picks up to n test images that every model classifies
correctly, spread over the classes, and scores every run on exactly those images with the
same noise seed; progress (the share over all runs) and the outcome are recorded through
backend/services/evaluation_lifecycle.py, which owns the row's state. Any failure marks the
evaluation failed with its message.

Same images for every run, or none: runs of one dataset share the test split when their
exports give each image its split (the app's exports do, unless a dataset has only one
split). When an export has no split, the library draws the test set from the run's seed and
test fraction; runs whose test sets differ that way, or whose exports differ (the dataset
changed between them), are refused with an error rather than scored on images that some of
them trained on.

Idempotent: a redelivered task of a finished evaluation does nothing; one of a queued or
running evaluation (its worker died) starts the evaluation again.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.queue import INEQUALITY_TASK
from backend.core.storage import ContentCache, Storage, get_storage
from backend.db import get_sessionmaker
from backend.models import TrainingRun
from backend.services import evaluation_lifecycle as lifecycle
from worker import run_files
from worker.celery_app import task
from worker.training_tasks import library_config, pick_device

_logger = logging.getLogger(__name__)

# the noise seed of every run's tests: equal draws make the rates comparable
NOISE_SEED = 0


@dataclass
class RunSource:
    """What one run brings: its row, its training config and the export it trained on."""

    run: TrainingRun
    cfg: Any  # worker.sipat.TrainConfig
    data_dir: Path
    manifest: dict[str, Any]

    def checkpoint(self, storage: Storage) -> Path:
        return run_files.final_checkpoint(ContentCache(storage, _cache_dir()), self.run)


def _cache_dir() -> Path:
    return get_settings().worker_cache_dir


def export_test_ids(manifest: dict[str, Any]) -> list[int] | None:
    """Dataset image ids of the export's test split in the library's order, or None when the
    export gives no split (the library then draws one from the run's seed; see load_export)."""
    entries = manifest["images"]
    splits = {e.get("split") for e in entries}
    if not {"train", "test"} <= splits:
        return None
    return [int(e["id"]) for e in entries if e.get("split") == "test"]


def test_set_identity(source: RunSource) -> tuple[Any, ...]:
    """Equal for two runs exactly when the library gives them the same test images."""
    ids = export_test_ids(source.manifest)
    if ids is not None:
        return ("export", tuple(ids), source.cfg.image_size)
    all_ids = tuple(int(e["id"]) for e in source.manifest["images"])
    return ("seeded", all_ids, source.cfg.image_size, source.cfg.test_fraction, source.cfg.seed)


def run_source(db: Session, storage: Storage, run_id: int) -> RunSource:
    run = db.get(TrainingRun, run_id)
    if run is None:
        raise ValueError(f"run {run_id} does not exist")
    if run.state != "succeeded":
        raise ValueError(f"run {run_id} has not finished successfully ({run.state})")
    try:
        data_dir = run_files.read_export(db, storage, ContentCache(storage, _cache_dir()), run.id)
    except FileNotFoundError as exc:
        raise ValueError(f"run {run_id}: the dataset export it trained on is missing") from exc
    manifest = json.loads((data_dir / "manifest.json").read_text())
    return RunSource(run, library_config(run, storage, data_dir, "cpu"), data_dir, manifest)


def check_same_test_set(sources: list[RunSource]) -> None:
    first = test_set_identity(sources[0])
    for other in sources[1:]:
        if test_set_identity(other) != first:
            raise ValueError(
                f"runs {sources[0].run.id} and {other.run.id} were tested on different images "
                "(a dataset without its own split, or one that changed between the runs); "
                "evaluate them separately"
            )


def common_images(
    sources: list[RunSource], test: Any, picked: Any, requested: int
) -> dict[str, Any]:
    """The result's record of the image set (test is the first run's TensorSet)."""
    ids = export_test_ids(sources[0].manifest)
    positions = [int(i) for i in picked]
    classes = list(sources[0].manifest["classes"])
    per_class = Counter(classes[int(test.labels[i])] for i in positions)
    return {
        "n": len(positions),
        "requested": requested,
        "image_ids": [ids[i] for i in positions] if ids is not None else None,
        "test_indices": positions,
        "per_class": dict(sorted(per_class.items())),
        "test_split": "export" if ids is not None else "seeded",
    }


def evaluate(
    sources: list[RunSource],
    storage: Storage,
    n_requested: int,
    device: str,
    on_progress: Callable[[float], None],
) -> dict[str, Any]:
    """Every inequality test of every run on one common image set; on_progress gets the
    share done over all runs. The test images are read as the first run read its data
    (its data_loader: a streamed set decodes only the batches it is asked for)."""
    from worker.sipat import load_data, load_model_from_checkpoint
    from worker.sipat.inequality import common_correct_subset, inequality_tests

    check_same_test_set(sources)
    cfg = sources[0].cfg
    test = load_data(
        sources[0].data_dir, cfg.image_size, cfg.test_fraction, cfg.seed, cfg.data_loader
    ).test
    models = [load_model_from_checkpoint(s.checkpoint(storage), device) for s in sources]
    picked = common_correct_subset(models, test, n_requested, device)
    if len(picked) == 0:
        raise ValueError("no test image is classified correctly by every selected run")
    x, _, _, y = test.batch(picked, device)
    scores: dict[str, Any] = {}
    for i, (source, model) in enumerate(zip(sources, models, strict=True)):

        def report(share: float, done: int = i) -> None:
            on_progress((done + share) / len(sources))

        scores[str(source.run.id)] = inequality_tests(model, x, y, seed=NOISE_SEED, progress=report)
        _logger.info("inequality evaluation: run %s done", source.run.id)
    images = common_images(sources, test, picked, n_requested)
    return {"seed": NOISE_SEED, "images": images, "runs": scores}


def run_evaluation(db: Session, storage: Storage, evaluation_id: int, device: str) -> str:
    """Load (claim the evaluation, read its runs), call the library, record the outcome
    (backend/services/evaluation_lifecycle.py); returns the outcome."""
    evaluation = lifecycle.claim(db, evaluation_id)
    if evaluation is None:
        return "skipped: no such evaluation, or already finished"
    try:
        sources = [run_source(db, storage, int(rid)) for rid in evaluation.run_ids]
        result = evaluate(
            sources,
            storage,
            evaluation.n_requested,
            device,
            lambda share: lifecycle.report_progress(db, evaluation, share),
        )
    except Exception as exc:  # any failure ends the evaluation with its message
        _logger.exception("inequality evaluation %s failed", evaluation_id)
        lifecycle.fail(db, evaluation_id, f"{type(exc).__name__}: {exc}")
        return "failed"
    return (
        "succeeded"
        if lifecycle.finish(db, evaluation_id, result)
        else "skipped: finished meanwhile"
    )


@task(name=INEQUALITY_TASK, acks_late=True)
def inequality_evaluation(evaluation_id: int) -> str:
    """Run one inequality evaluation (idempotent: a finished one is left alone)."""
    with get_sessionmaker()() as db:
        return run_evaluation(db, get_storage(), int(evaluation_id), pick_device())
