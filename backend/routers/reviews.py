"""The review of submitted masks: the researcher's queue, the accept / reject decision (one
mask or a selection), and one image's masks from every annotator side by side."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query

from backend.deps import DB_INT_MAX, ImageDep, PathId, QueryId, ResearcherUser, SessionDep
from backend.models import Annotation, DatasetClass
from backend.schemas.annotations import (
    ImageMask,
    ImageMasksReview,
    MaskPairIoU,
    ReviewBulkDecision,
    ReviewBulkResult,
    ReviewDecision,
    ReviewItem,
    ReviewQueue,
    ReviewResult,
    ReviewSkipped,
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
    cursor: Annotated[
        str | None,
        Query(
            max_length=40,
            pattern=service.CURSOR_PATTERN,
            description="next_cursor of the previous page: the page starts after it",
        ),
    ] = None,
) -> ReviewQueue:
    """Masks waiting for review (or with another status), oldest submission first."""
    rows, total, next_cursor = service.review_queue(
        db,
        status=status,
        dataset_id=dataset_id,
        annotator_id=annotator_id,
        offset=offset,
        limit=limit,
        cursor=cursor,
    )
    return ReviewQueue(data=[_item(row) for row in rows], count=total, next_cursor=next_cursor)


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
        flags=row.flags,
        num_masks_of_image=row.num_masks_of_image,
        provenance=row.provenance,
        proposal_source=row.proposal_source,
    )


def _result(ann: Annotation) -> ReviewResult:
    return ReviewResult(
        annotation_id=ann.id,
        status=ann.status,
        review_comment=ann.review_comment,
        reviewed_at=ann.reviewed_at,
    )


@router.post("/bulk", response_model=ReviewBulkResult)
def review_many(body: ReviewBulkDecision, user: ResearcherUser, db: SessionDep) -> ReviewBulkResult:
    """Accept or reject a selection of masks at once (a rejection needs a comment); masks
    that cannot be decided are listed with the reason and left as they were."""
    decided, skipped = service.decide_many(
        db, user, body.annotation_ids, body.decision, body.comment
    )
    return ReviewBulkResult(
        data=[_result(a) for a in decided],
        skipped=[ReviewSkipped(annotation_id=i, reason=r) for i, r in skipped],
    )


@router.get("/images/{image_id}", response_model=ImageMasksReview)
def image_masks(image: ImageDep, _: ResearcherUser, db: SessionDep) -> ImageMasksReview:
    """Every annotator's mask of one image side by side, with their pairwise IoU."""
    rows, pairs, mean = service.image_masks(db, image)
    cls = db.get(DatasetClass, image.class_id)
    return ImageMasksReview(
        image_id=image.id,
        dataset_id=image.dataset_id,
        filename=image.filename,
        class_name=cls.name if cls else "",
        width=image.width,
        height=image.height,
        image_url=f"/api/images/{image.id}/file",
        masks=[
            ImageMask(
                annotation_id=r.annotation.id,
                annotator_id=r.annotation.annotator_id,
                annotator=r.annotator,
                status=r.annotation.status,
                revision=r.annotation.latest_revision,
                area=r.area,
                flags=r.flags,
                mask_url=f"/api/annotations/{r.annotation.id}/mask.png",
            )
            for r in rows
        ],
        pairs=[MaskPairIoU(a=a, b=b, iou=v) for a, b, v in pairs],
        mean_pairwise_iou=mean,
    )


@router.post("/{annotation_id}", response_model=ReviewResult)
def review(
    annotation_id: PathId, body: ReviewDecision, user: ResearcherUser, db: SessionDep
) -> ReviewResult:
    """Accept or reject a submitted mask (a rejection needs a comment and returns it to its
    annotator, first in their queue)."""
    return _result(service.decide(db, user, annotation_id, body.decision, body.comment))


ROUTERS = [router]
