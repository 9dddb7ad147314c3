"""The life of an inequality evaluation, as one state machine (backend/models.py:
EVALUATION_TRANSITIONS).

    queued --claim--> running --finish--> succeeded
      |                  \\--fail--> failed
      \\--(the queue could not be reached)--> failed

Every change of an evaluation's state goes through this module: the API's dispatch
(backend/services/inequality.py stores the row, this sends it), and the worker's claim,
progress and outcome (worker/evaluation_tasks.py loads, calls the library, records here). A
redelivered task of a running evaluation (its worker died) takes it over and starts again; a
finished one is left alone. A move the table does not allow raises Conflict.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Unavailable
from backend.core.queue import INEQUALITY_TASK
from backend.models import EVALUATION_TRANSITIONS, InequalityEvaluation, utcnow

_logger = logging.getLogger(__name__)

Enqueue = Callable[..., str]

FINISHED = tuple(state for state, moves in EVALUATION_TRANSITIONS.items() if not moves)


def can_move(state: str, to: str) -> bool:
    return to in EVALUATION_TRANSITIONS.get(state, ())


def move(evaluation: InequalityEvaluation, to: str) -> None:
    """Set the evaluation's state to `to`, or raise Conflict when the table does not allow it."""
    if not can_move(evaluation.state, to):
        raise Conflict(f"A {evaluation.state} evaluation cannot become {to}.")
    evaluation.state = to


# ---------------------------------------------------------------------------- the API's side


def dispatch(db: Session, evaluation: InequalityEvaluation, enqueue_fn: Enqueue) -> None:
    """Store the queued evaluation and send its task. A broker that cannot be reached fails
    the evaluation with the reason and raises Unavailable."""
    db.add(evaluation)
    db.commit()
    try:
        enqueue_fn(INEQUALITY_TASK, evaluation.id)
    except Exception as exc:  # any broker failure: keep the row, say why
        _logger.exception("could not enqueue inequality evaluation %s", evaluation.id)
        move(evaluation, "failed")
        evaluation.error = f"The task queue could not be reached ({type(exc).__name__})."
        evaluation.finished_at = utcnow()
        db.commit()
        raise Unavailable("The task queue could not be reached; try again later.") from exc


# ---------------------------------------------------------------------------- the worker's side


def claim(db: Session, evaluation_id: int) -> InequalityEvaluation | None:
    """Mark the evaluation running for this delivery, from the start; None (nothing to do)
    when it is gone or finished."""
    evaluation = db.get(InequalityEvaluation, evaluation_id, with_for_update=True)
    if evaluation is None or evaluation.state in FINISHED:
        db.rollback()
        return None
    if evaluation.state != "running":  # a dead worker's evaluation is taken over as it stands
        move(evaluation, "running")
    evaluation.progress = 0.0
    evaluation.error = None
    db.commit()
    return evaluation


def report_progress(db: Session, evaluation: InequalityEvaluation, share: float) -> None:
    """The share of the evaluation done (0..1, over all of its runs)."""
    evaluation.progress = min(1.0, max(0.0, share))
    db.commit()


def finish(db: Session, evaluation_id: int, result: dict[str, Any]) -> bool:
    """Record the result of a running evaluation; False, and nothing written, when it is no
    longer running."""
    evaluation = db.get(InequalityEvaluation, evaluation_id, with_for_update=True)
    if evaluation is None or evaluation.state != "running":
        db.rollback()
        return False
    move(evaluation, "succeeded")
    evaluation.result = result
    evaluation.progress = 1.0
    evaluation.finished_at = utcnow()
    db.commit()
    return True


def fail(db: Session, evaluation_id: int, error: str) -> bool:
    """End an evaluation as failed with its error, whatever the session held (it is rolled
    back first); False when it is gone or already finished."""
    db.rollback()
    evaluation = db.get(InequalityEvaluation, evaluation_id, with_for_update=True)
    if evaluation is None or not can_move(evaluation.state, "failed"):
        db.rollback()
        return False
    move(evaluation, "failed")
    evaluation.error = error
    evaluation.finished_at = utcnow()
    db.commit()
    return True
