"""The review of submitted masks: the researcher's queue and the accept / reject decision."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid, NotFound
from backend.models import Annotation, AnnotationRevision, DatasetClass, Image, User, utcnow


@dataclass(frozen=True)
class QueueRow:
    """One mask in the review queue, with what the reviewer sees beside it."""

    annotation: Annotation
    image: Image
    class_name: str
    annotator: str
    area: int


def review_queue(
    db: Session,
    *,
    status: str,
    dataset_id: int | None,
    annotator_id: int | None,
    offset: int,
    limit: int,
) -> tuple[list[QueueRow], int]:
    """A page of masks with this status (oldest submission first) and how many there are."""
    where = [Annotation.status == status, Annotation.latest_revision > 0]
    if dataset_id is not None:
        where.append(Image.dataset_id == dataset_id)
    if annotator_id is not None:
        where.append(Annotation.annotator_id == annotator_id)
    base = select(Annotation).join(Image, Image.id == Annotation.image_id).where(*where)
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    rows = db.execute(
        select(Annotation, Image, DatasetClass.name, User.username, AnnotationRevision.area)
        .join(Image, Image.id == Annotation.image_id)
        .join(DatasetClass, DatasetClass.id == Image.class_id)
        .join(User, User.id == Annotation.annotator_id)
        .join(
            AnnotationRevision,
            (AnnotationRevision.annotation_id == Annotation.id)
            & (AnnotationRevision.revision == Annotation.latest_revision),
        )
        .where(*where)
        .order_by(Annotation.submitted_at.asc().nulls_last(), Annotation.id)
        .offset(offset)
        .limit(limit)
    ).all()
    return [QueueRow(a, im, cls, user, area) for a, im, cls, user, area in rows], total


def decide(
    db: Session, reviewer: User, annotation_id: int, decision: str, comment: str
) -> Annotation:
    """Accept or reject a submitted mask; a rejection needs a comment (it goes back to its
    annotator, first in their queue). The row is locked while it changes."""
    ann = db.scalar(select(Annotation).where(Annotation.id == annotation_id).with_for_update())
    if ann is None:
        raise NotFound("Annotation not found.")
    if ann.status == "draft" or ann.latest_revision == 0:
        raise Conflict("Only a submitted mask can be reviewed.")
    comment = comment.strip()
    if decision == "reject" and not comment:
        raise Invalid("Say why the mask is rejected.")
    ann.status = "accepted" if decision == "accept" else "rejected"
    ann.review_comment = comment
    ann.reviewed_by_id = reviewer.id
    ann.reviewed_at = utcnow()
    db.commit()
    return ann


def revision_of(db: Session, ann: Annotation, revision: int | None) -> AnnotationRevision:
    """The annotation's revision with this number (its newest when None)."""
    rev = db.scalar(
        select(AnnotationRevision).where(
            AnnotationRevision.annotation_id == ann.id,
            AnnotationRevision.revision == (revision or ann.latest_revision),
        )
    )
    if rev is None:
        raise NotFound("Revision not found.")
    return rev
