"""The inequality evaluation of finished runs (IGD / Duan et al.), the API's side.

start_evaluation() checks the runs and has a queued InequalityEvaluation stored and its
task sent (backend/services/evaluation_lifecycle.py, which makes every move of its state; the
worker's task, worker/evaluation_tasks.py, records progress and the result there);
latest_evaluations() finds earlier evaluations of the same set of runs.
Refusals raise the domain errors of backend/core/errors.py, each with a sentence for the user.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid, NotFound
from backend.core.queue import enqueue
from backend.models import InequalityEvaluation, TrainingRun
from backend.services import evaluation_lifecycle as lifecycle

MAX_RUNS = 20
MAX_IMAGES = 2000
DEFAULT_IMAGES = 200

Enqueue = Callable[..., str]


def run_key(run_ids: Sequence[int]) -> str:
    """The lookup key of a set of runs: sorted ids joined by commas, order and repeats aside."""
    return ",".join(str(i) for i in sorted(set(run_ids)))


def evaluable_runs(db: Session, run_ids: Sequence[int]) -> list[TrainingRun]:
    """The runs, if every one exists (else 404), has finished with a model, and all were
    trained on one dataset at one image size (else 422), so that they can share test images."""
    runs = []
    for rid in run_ids:
        run = db.get(TrainingRun, rid)
        if run is None:
            raise NotFound(f"Run {rid} not found.")
        if run.state != "succeeded" or not run.checkpoint_key:
            raise Invalid(
                f"Run {rid} has not finished successfully ({run.state}); "
                "only finished runs can be evaluated."
            )
        runs.append(run)
    if len({r.dataset_id for r in runs}) > 1:
        raise Invalid(
            "The runs were trained on different datasets; choose runs of one dataset, "
            "so that they are scored on the same test images."
        )
    if len({(r.config or {}).get("image_size") for r in runs}) > 1:
        raise Invalid("The runs use different image sizes; choose runs that see the same images.")
    return runs


def start_evaluation(
    db: Session,
    user_id: int | None,
    run_ids: Sequence[int],
    n: int = DEFAULT_IMAGES,
    enqueue_fn: Enqueue | None = None,
) -> InequalityEvaluation:
    """Store a queued evaluation of these runs on up to n common test images and queue it
    (through enqueue_fn when given, else this module's enqueue, read at call time)."""
    if not run_ids:
        raise Invalid("Choose at least one run.")
    if len(set(run_ids)) > MAX_RUNS:
        raise Invalid(f"Choose at most {MAX_RUNS} runs at once.")
    if not 1 <= n <= MAX_IMAGES:
        raise Invalid(f"The number of images must be between 1 and {MAX_IMAGES}.")
    ids = list(dict.fromkeys(run_ids))
    runs = evaluable_runs(db, ids)
    evaluation = InequalityEvaluation(
        run_ids=ids,
        run_key=run_key(ids),
        dataset_id=runs[0].dataset_id,
        n_requested=n,
        common_set=len(ids) > 1,
        state="queued",
        created_by_id=user_id,
    )
    lifecycle.dispatch(db, evaluation, enqueue_fn or enqueue)
    return evaluation


def get_evaluation(db: Session, evaluation_id: int) -> InequalityEvaluation:
    evaluation = db.get(InequalityEvaluation, evaluation_id)
    if evaluation is None:
        raise NotFound("Evaluation not found.")
    return evaluation


def latest_evaluations(
    db: Session, run_ids: Sequence[int], limit: int = 10
) -> list[InequalityEvaluation]:
    """Evaluations of exactly this set of runs, newest first."""
    return list(
        db.scalars(
            select(InequalityEvaluation)
            .where(InequalityEvaluation.run_key == run_key(run_ids))
            .order_by(InequalityEvaluation.id.desc())
            .limit(limit)
        )
    )
