"""Label studies' figures on the run's side (issue 26): a run's human-validated robust
accuracy from every label study that covers it (the study's own page reads the study's
results, backend/routers/studies.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.deps import RunDep, SessionDep
from backend.services.studies import labels

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("/{run_id}/results")
def run_results(run: RunDep, db: SessionDep) -> dict[str, Any]:
    """The run's results from its label studies: `human_validated_robust_accuracy`, one
    entry per study and epsilon with its 95 % participant-bootstrap interval, beside
    AutoAttack's robust accuracy on the same images (docs/studies.md, "Label studies")."""
    return {
        "run_id": run.id,
        "human_validated_robust_accuracy": labels.run_label_results(db, run.id),
    }


ROUTERS = [router]
