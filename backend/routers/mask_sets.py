"""Mask sets: a dataset's consensus frozen under a filter and hashed, what training runs use."""

from __future__ import annotations

from fastapi import APIRouter, Response
from sqlalchemy import select

from backend.core.openapi import PNG
from backend.deps import DatasetDep, MaskSetDep, PathId, ResearcherUser, SessionDep
from backend.models import MaskSet
from backend.schemas.annotations import (
    MaskSetCreate,
    MaskSetDetail,
    MaskSetFrozen,
    MaskSetsPublic,
)
from backend.services import consensus as cons

router = APIRouter(tags=["masks"])


@router.post("/datasets/{dataset_id}/mask-sets", response_model=MaskSetFrozen, status_code=201)
def create_mask_set(
    dataset: DatasetDep,
    body: MaskSetCreate,
    user: ResearcherUser,
    db: SessionDep,
    response: Response,
) -> MaskSetFrozen:
    """Freeze the current consensus (filtered) into a hashed mask set; 200 with a sentence
    (`message`) if the same masks are frozen already; 409 if the name is taken on the dataset."""
    mask_set, created = cons.freeze_mask_set(
        db,
        dataset,
        name=body.name,
        statuses=sorted(set(body.statuses)),
        min_annotators=body.min_annotators,
        min_agreement=body.min_agreement,
        created_by=user,
        exclude_proposals=body.exclude_proposals,
    )
    out = MaskSetFrozen.model_validate(mask_set)
    if not created:
        response.status_code = 200
        out.message = cons.already_frozen(mask_set)
    return out


@router.get("/datasets/{dataset_id}/mask-sets", response_model=MaskSetsPublic)
def list_mask_sets(dataset: DatasetDep, _: ResearcherUser, db: SessionDep) -> MaskSetsPublic:
    """A dataset's mask sets, newest first."""
    rows = list(
        db.scalars(
            select(MaskSet).where(MaskSet.dataset_id == dataset.id).order_by(MaskSet.id.desc())
        ).all()
    )
    return MaskSetsPublic(data=rows, count=len(rows))


@router.get("/mask-sets/{mask_set_id}", response_model=MaskSetDetail)
def get_mask_set(mask_set: MaskSetDep) -> MaskSet:
    """One mask set with its items (images, revision ids, agreement)."""
    return mask_set


@router.get(
    "/mask-sets/{mask_set_id}/images/{image_id}/consensus.png",
    response_class=Response,
    responses=PNG,
)
def mask_set_consensus(mask_set: MaskSetDep, image_id: PathId) -> Response:
    """The frozen consensus of one image of a mask set (8-bit grey PNG)."""
    return Response(
        content=cons.frozen_consensus_png(mask_set, image_id),
        media_type="image/png",
        headers={"Cache-Control": "no-store"},
    )


ROUTERS = [router]
