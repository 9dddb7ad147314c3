"""The inequality evaluation of finished runs (IGD / Duan et al.) on one common set of test
images: start it, watch its progress, find the latest one of a set of runs.

Mounted under /api/runs/inequality. backend/main.py lists this module before runs.py, so
these routes come before /runs/{run_id} and "inequality" is never read as a run id.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query

from backend.deps import PathId, ResearcherUser, SessionDep
from backend.models import InequalityEvaluation
from backend.schemas.inequality import (
    InequalityCreate,
    InequalityEvaluationsPublic,
    InequalityPublic,
)
from backend.services import inequality as service

router = APIRouter(prefix="/runs/inequality", tags=["runs"])


def _run_ids(text: str) -> list[int]:
    try:
        ids = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise HTTPException(
            422, detail="run_ids must be a comma-separated list of run ids."
        ) from None
    if not ids:
        raise HTTPException(422, detail="Give at least one run id.")
    return ids


@router.post("", response_model=InequalityPublic, status_code=202)
def start_evaluation(
    body: InequalityCreate, user: ResearcherUser, db: SessionDep
) -> InequalityEvaluation:
    """Queue the inequality tests of these runs on up to n test images they all get right."""
    return service.start_evaluation(db, user.id, body.run_ids, body.n)


@router.get("", response_model=InequalityEvaluationsPublic)
def find_evaluations(
    _: ResearcherUser,
    db: SessionDep,
    run_ids: str,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> InequalityEvaluationsPublic:
    """Evaluations of exactly this set of runs (run_ids=1,2), newest first."""
    found = service.latest_evaluations(db, _run_ids(run_ids), limit)
    data = [InequalityPublic.model_validate(e) for e in found]
    return InequalityEvaluationsPublic(data=data, count=len(data))


@router.get("/{evaluation_id}", response_model=InequalityPublic)
def get_evaluation(
    evaluation_id: PathId, _: ResearcherUser, db: SessionDep
) -> InequalityEvaluation:
    """One evaluation: state, progress, and when finished its result or error."""
    return service.get_evaluation(db, evaluation_id)


ROUTERS = [router]
