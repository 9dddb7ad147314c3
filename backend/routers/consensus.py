"""Consensus and agreement of the masks people drew: per image (a grey or binary PNG, pairwise
IoU) and per dataset (per image, split-half ceiling, per annotator). Researchers only."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response

from backend.core.openapi import PNG
from backend.deps import DB_INT_MAX, DatasetDep, ImageDep, ResearcherUser, SessionDep
from backend.schemas.annotations import DatasetAgreement, ImageAgreement
from backend.services import consensus as cons
from backend.services.masks.codec import grey_png, mask_to_png

router = APIRouter(tags=["masks"])

StatusesQuery = Annotated[str, Query(description="accepted, submitted, or both comma-separated")]
PNG_HEADERS = {"Cache-Control": "no-store"}


def _png(data: bytes) -> Response:
    return Response(content=data, media_type="image/png", headers=PNG_HEADERS)


@router.get("/images/{image_id}/consensus.png", response_class=Response, responses=PNG)
def consensus_png(
    image: ImageDep, _: ResearcherUser, db: SessionDep, statuses: StatusesQuery = "accepted"
) -> Response:
    """The mean of the image's masks as an 8-bit grey PNG (255 = every annotator)."""
    mean = cons.image_consensus(db, image, cons.parse_statuses(statuses))
    return _png(grey_png(cons.consensus_uint8(mean)))


@router.get("/images/{image_id}/consensus-binary.png", response_class=Response, responses=PNG)
def consensus_binary_png(
    image: ImageDep,
    _: ResearcherUser,
    db: SessionDep,
    statuses: StatusesQuery = "accepted",
    threshold: Annotated[float, Query(gt=0.0, le=1.0)] = 0.5,
) -> Response:
    """The consensus binarised at a threshold (mean >= threshold), as a 1-bit PNG."""
    mean = cons.image_consensus(db, image, cons.parse_statuses(statuses))
    return _png(mask_to_png(mean >= threshold))


@router.get("/images/{image_id}/agreement", response_model=ImageAgreement)
def image_agreement(
    image: ImageDep, _: ResearcherUser, db: SessionDep, statuses: StatusesQuery = "accepted"
) -> ImageAgreement:
    """Mean pairwise IoU of the image's masks."""
    found = cons.load_masks(db, image_id=image.id, statuses=cons.parse_statuses(statuses))
    masks = [m.mask for m in found[image.id].masks] if image.id in found else []
    return ImageAgreement(
        image_id=image.id,
        num_annotators=len(masks),
        mean_pairwise_iou=cons.mean_pairwise_iou(masks),
    )


@router.get("/datasets/{dataset_id}/agreement", response_model=DatasetAgreement)
def dataset_agreement(
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    statuses: StatusesQuery = "accepted",
    threshold: Annotated[float, Query(gt=0.0, le=1.0)] = 0.5,
    splits: Annotated[int, Query(ge=1, le=1000)] = 20,
    seed: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
) -> dict[str, Any]:
    """Agreement per image, per dataset (pairwise IoU, split-half ceiling) and per annotator."""
    return cons.dataset_agreement(
        db,
        dataset,
        statuses=cons.parse_statuses(statuses),
        threshold=threshold,
        splits=splits,
        seed=seed,
    )


ROUTERS = [router]
