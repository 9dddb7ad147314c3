"""The life of a perception study, as one state machine (backend/models.py: STUDY_TRANSITIONS).

    draft --start--> generating --finish--> ready --open--> open --close--> closed
                       |    ^                                  ^--open--/
                       |    \\--start (again)-- failed
                       \\--fail (an error, or the queue unreachable)--^

Every change of a study's state goes through this module: the API's start of generation,
open and close, and the worker's side of generation (worker/study_tasks.py loads the study
here, calls the library, and records each stimulus through backend/services/studies/
stimuli.py and the end here). A move the table does not allow raises Conflict, so a late or
duplicated message can never, say, turn an open study back into a ready one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Unavailable
from backend.core.queue import STIMULI_TASK, enqueue
from backend.models import STUDY_TRANSITIONS, Study

_logger = logging.getLogger(__name__)

Enqueue = Callable[..., str]


def can_move(state: str, to: str) -> bool:
    return to in STUDY_TRANSITIONS.get(state, ())


def move(study: Study, to: str, refusal: str | None = None) -> None:
    """Set the study's state to `to`, or raise Conflict (with `refusal`, the sentence for the
    user, when given) when the table does not allow it."""
    if not can_move(study.state, to):
        raise Conflict(refusal or f"A {study.state} study cannot become {to}.")
    study.state = to


# ---------------------------------------------------------------------------- the API's side


def start_generation(db: Session, study: Study, enqueue_fn: Enqueue = enqueue) -> Study:
    """Queue the making of a draft (or failed) study's stimuli. A broker that cannot be
    reached fails the study with the reason and raises Unavailable."""
    move(study, "generating", "Stimuli can only be generated for a draft or failed study.")
    study.error = None
    study.progress = 0.0
    db.commit()
    try:
        enqueue_fn(STIMULI_TASK, study.id)
    except Exception as exc:  # broker down: say why on the study
        _logger.exception("could not enqueue stimulus generation for study %s", study.id)
        move(study, "failed")
        study.error = f"The task queue could not be reached: {exc}"
        db.commit()
        raise Unavailable("The task queue could not be reached; try again later.") from exc
    return study


def open_study(db: Session, study: Study) -> Study:
    """Let participants in (a ready study, or a closed one again)."""
    move(study, "open", "Only a study whose stimuli are ready can be opened.")
    db.commit()
    return study


def close_study(db: Session, study: Study) -> Study:
    """Admit no new participants (started sessions may finish)."""
    move(study, "closed", "Only an open study can be closed.")
    db.commit()
    return study


# ---------------------------------------------------------------------------- the worker's side


def claim_generation(db: Session, study_id: int) -> Study | None:
    """The study whose stimuli a delivery of the generation task makes: a generating one
    (queued by the API, or a redelivery after a worker died: it goes on where it stopped), or
    a draft one (made directly, as the tests and tools do). None when there is nothing to
    make: the study is gone, or its generation already ended (ready, open, closed, failed)."""
    study = db.get(Study, study_id)
    if study is None:
        _logger.warning("study %s vanished before its stimuli were made", study_id)
        return None
    if study.state == "draft":
        move(study, "generating")
        study.error = None
        study.progress = 0.0
        db.commit()
    elif study.state != "generating":
        _logger.info("study %s is %s: no stimuli to make", study_id, study.state)
        return None
    return study


def finish_generation(db: Session, study: Study, config: dict[str, Any]) -> None:
    """Mark the study's stimuli ready, with what generation learnt added to its config (the
    served length of a stimulus, the image size)."""
    move(study, "ready")
    study.config = {**study.config, **config}
    study.progress = 1.0
    study.error = None
    db.commit()


def fail_generation(db: Session, study_id: int, error: str) -> bool:
    """Mark a generating study failed with the error, whatever its session held (rolled back
    first); False when it is gone or no longer generating."""
    db.rollback()
    study = db.get(Study, study_id)
    if study is None or not can_move(study.state, "failed"):
        return False
    move(study, "failed")
    study.error = error
    db.commit()
    return True
