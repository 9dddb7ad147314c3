"""The review of submitted masks: the researcher's queue (keyset-paginated), the accept /
reject decision one by one or for a selection, and all annotators' masks of one image side
by side with their pairwise IoU."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, and_, func, or_, select
from sqlalchemy.orm import Session

from backend.core.errors import Conflict, Invalid, NotFound
from backend.models import Annotation, AnnotationRevision, DatasetClass, Image, User, utcnow
from backend.services.consensus import iou
from backend.services.masks.codec import load_revision_mask
from backend.services.masks.queue import mask_flags, recount

# What the side-by-side view and the per-image mask counts show (drafts are unfinished).
REVIEWED_STATUSES = ("submitted", "accepted", "rejected")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# a cursor: "<submitted_at in microseconds since 1970>.<annotation id>", or "n.<id>" for a
# mask without a submission time (drafts), which sort last
CURSOR_PATTERN = r"^(n|[0-9]{1,17})\.[0-9]{1,10}$"


@dataclass(frozen=True)
class QueueRow:
    """One mask in the review queue, with what the reviewer sees beside it."""

    annotation: Annotation
    image: Image
    class_name: str
    annotator: str
    area: int
    flags: list[str]
    num_masks_of_image: int
    # the newest revision's provenance and proposal (models.AnnotationRevision)
    provenance: dict[str, Any] | None = None
    proposal_source: str | None = None


def make_cursor(ann: Annotation) -> str:
    if ann.submitted_at is None:
        return f"n.{ann.id}"
    at = ann.submitted_at if ann.submitted_at.tzinfo else ann.submitted_at.replace(tzinfo=UTC)
    return f"{(at - _EPOCH) // timedelta(microseconds=1)}.{ann.id}"


def _after_cursor(cursor: str) -> ColumnElement[bool]:
    """Masks after the cursor in the queue's order (submitted_at, nulls last; then id)."""
    if not re.fullmatch(CURSOR_PATTERN, cursor):
        raise Invalid("This page cursor is not one the server gave out; reload the list.")
    stamp, _, raw_id = cursor.partition(".")
    last_id = int(raw_id)
    if stamp == "n":
        return and_(Annotation.submitted_at.is_(None), Annotation.id > last_id)
    try:
        at = _EPOCH + timedelta(microseconds=int(stamp))
    except OverflowError:
        raise Invalid("This page cursor is not one the server gave out; reload the list.") from None
    return or_(
        Annotation.submitted_at > at,
        and_(Annotation.submitted_at == at, Annotation.id > last_id),
        Annotation.submitted_at.is_(None),
    )


def review_queue(
    db: Session,
    *,
    status: str,
    dataset_id: int | None,
    annotator_id: int | None,
    offset: int,
    limit: int,
    cursor: str | None = None,
) -> tuple[list[QueueRow], int, str | None]:
    """A page of masks with this status (oldest submission first), how many there are in
    all, and the cursor of the next page (None on the last). With a cursor the page starts
    after the mask it names, so masks decided meanwhile (which leave a "submitted" list)
    never make the next page skip any."""
    where = [Annotation.status == status, Annotation.latest_revision > 0]
    if dataset_id is not None:
        where.append(Image.dataset_id == dataset_id)
    if annotator_id is not None:
        where.append(Annotation.annotator_id == annotator_id)
    base = select(Annotation).join(Image, Image.id == Annotation.image_id).where(*where)
    total = db.scalar(select(func.count()).select_from(base.subquery())) or 0
    page_where = [*where, _after_cursor(cursor)] if cursor else where
    rows = db.execute(
        select(
            Annotation,
            Image,
            DatasetClass.name,
            User.username,
            AnnotationRevision.area,
            AnnotationRevision.provenance,
            AnnotationRevision.proposal_source,
        )
        .join(Image, Image.id == Annotation.image_id)
        .join(DatasetClass, DatasetClass.id == Image.class_id)
        .join(User, User.id == Annotation.annotator_id)
        .join(
            AnnotationRevision,
            (AnnotationRevision.annotation_id == Annotation.id)
            & (AnnotationRevision.revision == Annotation.latest_revision),
        )
        .where(*page_where)
        .order_by(Annotation.submitted_at.asc().nulls_last(), Annotation.id)
        .offset(offset)
        .limit(limit + 1)
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    image_ids = sorted({row[1].id for row in rows})
    per_image = dict(
        db.execute(
            select(Annotation.image_id, func.count())
            .where(
                Annotation.image_id.in_(image_ids),
                Annotation.latest_revision > 0,
                Annotation.status.in_(REVIEWED_STATUSES),
            )
            .group_by(Annotation.image_id)
        ).all()
    )
    out = [
        QueueRow(
            a,
            im,
            cls,
            user,
            area,
            mask_flags(area, im.width, im.height),
            int(per_image.get(im.id, 1)),
            provenance,
            proposal_source,
        )
        for a, im, cls, user, area, provenance, proposal_source in rows
    ]
    next_cursor = make_cursor(rows[-1][0]) if more and rows else None
    return out, total, next_cursor


def _decide(ann: Annotation, reviewer: User, decision: str, comment: str) -> None:
    if ann.status == "draft" or ann.latest_revision == 0:
        raise Conflict("Only a submitted mask can be reviewed.")
    ann.status = "accepted" if decision == "accept" else "rejected"
    ann.review_comment = comment
    ann.reviewed_by_id = reviewer.id
    ann.reviewed_at = utcnow()


def _comment(decision: str, comment: str) -> str:
    comment = comment.strip()
    if decision == "reject" and not comment:
        raise Invalid("Say why the mask is rejected.")
    return comment


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
    _decide(ann, reviewer, decision, _comment(decision, comment))
    db.flush()
    recount(db, [ann.image_id])  # a returned mask no longer holds its image's slot
    db.commit()
    return ann


def decide_many(
    db: Session, reviewer: User, annotation_ids: list[int], decision: str, comment: str
) -> tuple[list[Annotation], list[tuple[int, str]]]:
    """The same decision for a selection, in one transaction (rows locked in id order, so
    two bulk reviews never deadlock). Returns the decided masks and, for each one left as
    it was, its id and the sentence why."""
    comment = _comment(decision, comment)
    found = {
        a.id: a
        for a in db.scalars(
            select(Annotation)
            .where(Annotation.id.in_(annotation_ids))
            .order_by(Annotation.id)
            .with_for_update()
        ).all()
    }
    decided: list[Annotation] = []
    skipped: list[tuple[int, str]] = []
    for annotation_id in annotation_ids:
        ann = found.get(annotation_id)
        if ann is None:
            skipped.append((annotation_id, "Annotation not found."))
            continue
        try:
            _decide(ann, reviewer, decision, comment)
        except Conflict as exc:
            skipped.append((annotation_id, exc.message))
            continue
        decided.append(ann)
    db.flush()
    recount(db, [a.image_id for a in decided])
    db.commit()
    return decided, skipped


@dataclass(frozen=True)
class ImageMaskRow:
    annotation: Annotation
    annotator: str
    area: int
    flags: list[str]


def image_masks(
    db: Session, image: Image
) -> tuple[list[ImageMaskRow], list[tuple[int, int, float]], float | None]:
    """Every annotator's newest mask of the image (submitted, accepted or rejected), and the
    IoU of each pair (annotation ids, IoU) with their mean (None with fewer than two)."""
    rows = db.execute(
        select(Annotation, User.username, AnnotationRevision)
        .join(User, User.id == Annotation.annotator_id)
        .join(
            AnnotationRevision,
            (AnnotationRevision.annotation_id == Annotation.id)
            & (AnnotationRevision.revision == Annotation.latest_revision),
        )
        .where(Annotation.image_id == image.id, Annotation.status.in_(REVIEWED_STATUSES))
        .order_by(Annotation.annotator_id)
    ).all()
    masks = [(a.id, load_revision_mask(rev)) for a, _, rev in rows]
    pairs = [(a, b, iou(ma, mb)) for (a, ma), (b, mb) in itertools.combinations(masks, 2)]
    mean = sum(p[2] for p in pairs) / len(pairs) if pairs else None
    out = [
        ImageMaskRow(a, name, rev.area, mask_flags(rev.area, image.width, image.height))
        for a, name, rev in rows
    ]
    return out, pairs, mean


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
