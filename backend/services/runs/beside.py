"""Figures the app holds about runs beside their own results, for the tables that set runs
side by side (a sweep's page, compare's groups): each run's human-validated robust accuracy
from the latest label study that covers it (per epsilon), and the error rates of its latest
finished inequality evaluation. Keys and labels are runconfig.sweep's (HUMAN_VALIDATED,
INEQUALITY), so the page names them as it names the run's own figures.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.models import InequalityEvaluation, Study, StudyRun, TrainingRun
from backend.services.studies.labels import has_outcomes, label_results
from runconfig import sweep as grid


def figures_beside(db: Session, run_ids: Collection[int]) -> dict[int, dict[str, float]]:
    """Run id -> the figures above that it has (runs with none are left out)."""
    wanted = set(run_ids)
    out: dict[int, dict[str, float]] = {}
    if not wanted:
        return out
    # label studies, oldest first: a later study's figure at an epsilon replaces an earlier one
    studies = db.scalars(
        select(Study)
        .where(
            Study.design == "label",
            Study.id.in_(select(StudyRun.study_id).where(StudyRun.run_id.in_(wanted))),
        )
        .order_by(Study.id)
    )
    for study in studies:
        if not has_outcomes(study):
            continue
        for run in label_results(db, study)["runs"]:
            if run["run_id"] not in wanted:
                continue
            for point in run["points"]:
                value = point.get("human_validated_robust_accuracy")
                if isinstance(value, (int, float)):
                    key = f"{grid.HUMAN_VALIDATED}{point['epsilon_255']:g}"
                    out.setdefault(run["run_id"], {})[key] = float(value)
    # inequality evaluations, oldest first, so the latest that covers a run gives its figures
    evaluations = db.scalars(
        select(InequalityEvaluation)
        .where(
            InequalityEvaluation.state == "succeeded",
            InequalityEvaluation.dataset_id.in_(
                select(TrainingRun.dataset_id).where(TrainingRun.id.in_(wanted))
            ),
        )
        .order_by(InequalityEvaluation.id)
    )
    for evaluation in evaluations:
        results: dict[str, Any] = (evaluation.result or {}).get("runs") or {}
        for rid, result in results.items():
            if int(rid) in wanted and isinstance(result, dict):
                figures = grid.inequality_figures(result)
                if figures:
                    held = out.setdefault(int(rid), {})
                    held = {k: v for k, v in held.items() if not k.startswith(grid.INEQUALITY)}
                    out[int(rid)] = {**held, **figures}
    return out
