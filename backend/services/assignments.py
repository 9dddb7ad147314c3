"""Which annotators may work on a dataset. A dataset without assignments is open to every
annotator; once anyone is assigned, only they see it in their list and get its images (the
queue's side of the rule is backend/services/masks/queue.py, dataset_open_to)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid
from backend.models import Dataset, DatasetAssignment, User


@dataclass(frozen=True)
class Assignments:
    assigned_user_ids: list[int]
    annotators: list[tuple[int, str, bool]]  # every active annotator: id, name, assigned


def assignments(db: Session, dataset: Dataset) -> Assignments:
    assigned = list(
        db.scalars(
            select(DatasetAssignment.user_id)
            .where(DatasetAssignment.dataset_id == dataset.id)
            .order_by(DatasetAssignment.user_id)
        ).all()
    )
    chosen = set(assigned)
    people = db.execute(
        select(User.id, User.username)
        .where(
            User.role == "annotator",
            User.is_active.is_(True),
            User.username.not_like("import:%"),
        )
        .order_by(User.username)
    ).all()
    return Assignments(assigned, [(i, name, i in chosen) for i, name in people])


def set_assignments(db: Session, dataset: Dataset, user_ids: list[int]) -> Assignments:
    """Replace the dataset's assigned annotators ([] opens it to every annotator again).
    Every id must be an active annotator's; otherwise nothing changes."""
    wanted = sorted(set(user_ids))
    found = set(
        db.scalars(
            select(User.id).where(
                User.id.in_(wanted), User.role == "annotator", User.is_active.is_(True)
            )
        ).all()
    )
    unknown = [i for i in wanted if i not in found]
    if unknown:
        raise Invalid(
            "Only active annotators can be assigned; these ids are not: "
            + ", ".join(map(str, unknown[:20]))
            + ".",
            field="user_ids",
        )
    db.execute(delete(DatasetAssignment).where(DatasetAssignment.dataset_id == dataset.id))
    db.add_all(DatasetAssignment(dataset_id=dataset.id, user_id=i) for i in wanted)
    db.commit()
    return assignments(db, dataset)
