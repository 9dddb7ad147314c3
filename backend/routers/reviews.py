"""The review of submitted masks: the researcher's queue and the accept / reject decision."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.deps import DB_INT_MAX, PathId, QueryId, ResearcherUser, SessionDep
from backend.schemas.annotations import (
    ReviewDecision,
    ReviewItem,
    ReviewQueue,
    ReviewResult,
)
from backend.services import reviews as service

router = APIRouter(prefix="/reviews", tags=["reviews"])


@router.get("", response_model=ReviewQueue)
def review_queue(
    _: ResearcherUser,
    db: SessionDep,
    dataset_id: QueryId = None,
    status: Annotated[Literal["submitted", "accepted", "rejected", "draft"], Query()] = "submitted",
    annotator_id: QueryId = None,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> ReviewQueue:
    """Masks waiting for review (or with another status), oldest submission first."""
    rows, total = service.review_queue(
        db,
        status=status,
        dataset_id=dataset_id,
        annotator_id=annotator_id,
        offset=offset,
        limit=limit,
    )
    return ReviewQueue(data=[_item(row) for row in rows], count=total)


def _item(row: service.QueueRow) -> ReviewItem:
    a, im = row.annotation, row.image
    return ReviewItem(
        annotation_id=a.id,
        image_id=im.id,
        dataset_id=im.dataset_id,
        filename=im.filename,
        class_name=row.class_name,
        width=im.width,
        height=im.height,
        annotator_id=a.annotator_id,
        annotator=row.annotator,
        status=a.status,
        revision=a.latest_revision,
        area=row.area,
        active_ms=a.active_ms,
        submitted_at=a.submitted_at,
        review_comment=a.review_comment,
        mask_url=f"/api/annotations/{a.id}/mask.png",
        image_url=f"/api/images/{im.id}/file",
    )


@router.post("/{annotation_id}", response_model=ReviewResult)
def review(
    annotation_id: PathId, body: ReviewDecision, user: ResearcherUser, db: SessionDep
) -> ReviewResult:
    """Accept or reject a submitted mask (a rejection needs a comment and returns it to its
    annotator, first in their queue)."""
    ann = service.decide(db, user, annotation_id, body.decision, body.comment)
    return ReviewResult(
        annotation_id=ann.id,
        status=ann.status,
        review_comment=ann.review_comment,
        reviewed_at=ann.reviewed_at,
    )


ROUTERS = [router]
