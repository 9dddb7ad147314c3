"""Which annotators may work on a dataset. A dataset without assignments is open to every
annotator; once anyone is assigned, only they see it in their list and get its images (the
queue, backend/services/masks/queue.py, asks `dataset_open_to`), its image files included
(`open_image`).

An annotator is answered the same 404, with the same sentence, for an id that names nothing
and for one in a dataset not open to them: ids tell an annotator nothing about what exists."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import ColumnElement, delete, exists, or_, select
from sqlalchemy.orm import Session

from backend.core.errors import Invalid, NotFound
from backend.models import Dataset, DatasetAssignment, Image, User

IMAGE_NOT_OPEN = "Image not found among the datasets open to you."
DATASET_NOT_OPEN = (
    "Dataset not found among the datasets open to you; a researcher can assign you to it."
)


def dataset_open_to(user: User) -> ColumnElement[bool]:
    """Datasets this annotator may work on: those without any assignment, and those they are
    assigned to (a condition on Dataset.id)."""
    any_assignment = exists().where(DatasetAssignment.dataset_id == Dataset.id)
    assigned = exists().where(
        DatasetAssignment.dataset_id == Dataset.id, DatasetAssignment.user_id == user.id
    )
    return or_(~any_assignment, assigned)


def is_open_to(db: Session, user: User, dataset_id: int) -> bool:
    """Whether the dataset exists and this annotator may work on it."""
    found = db.scalar(select(Dataset.id).where(Dataset.id == dataset_id, dataset_open_to(user)))
    return found is not None


def check_dataset_open(db: Session, user: User, dataset_id: int) -> None:
    """Refuse (NotFound, one sentence for both) a dataset that does not exist or is assigned
    to other annotators only."""
    if not is_open_to(db, user, dataset_id):
        raise NotFound(DATASET_NOT_OPEN)


def open_image(db: Session, user: User, image_id: int) -> Image:
    """The image, when its dataset is open to this annotator (any image for other roles);
    NotFound, one sentence for both, when it does not exist or its dataset is not open."""
    if user.role != "annotator":
        image = db.get(Image, image_id)
        if image is None:
            raise NotFound("Image not found.")
        return image
    # one query: the image, only if its dataset is open to them
    image = db.scalar(
        select(Image).where(
            Image.id == image_id,
            Image.dataset_id.in_(select(Dataset.id).where(dataset_open_to(user))),
        )
    )
    if image is None:
        raise NotFound(IMAGE_NOT_OPEN)
    return image


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
