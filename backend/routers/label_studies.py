"""Studies' figures on the run's side: a run's human-validated robust accuracy from every
label study that covers it (issue 26), and its robust accuracy at people's detection
threshold from every detection study that covers it (issue 25; the study's own page reads
the study's results, backend/routers/studies.py)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from backend.deps import RunDep, SessionDep, StorageDep
from backend.services.studies import analysis_cache, labels

router = APIRouter(prefix="/runs", tags=["runs"])


@router.get("/{run_id}/results")
def run_results(run: RunDep, db: SessionDep, storage: StorageDep) -> dict[str, Any]:
    """The run's results from its studies: `human_validated_robust_accuracy` (label
    studies), one entry per study and epsilon with its 95 % participant-bootstrap interval,
    beside AutoAttack's robust accuracy on the same images (docs/studies.md, "Label
    studies"); `accuracy_at_threshold` (detection studies), per study the model's AutoAttack
    and PGD accuracy at people's threshold with the interval from the threshold's, as the
    study's last analysis has it (docs/studies.md, "The model beside the people")."""
    return {
        "run_id": run.id,
        "human_validated_robust_accuracy": labels.run_label_results(db, run.id),
        "accuracy_at_threshold": analysis_cache.run_threshold_results(db, storage, run.id),
    }


ROUTERS = [router]
