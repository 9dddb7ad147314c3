"""A dataset's masks in and out: export as a zip of PNGs or COCO RLE JSON, import from those
or from CUB-style soft segmentations (as the pseudo-annotator import:<name>)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from backend.core.config import get_settings
from backend.core.openapi import content
from backend.deps import (
    DatasetDep,
    OptionalMaskSetDep,
    QueryId,
    ResearcherUser,
    SessionDep,
    refuse_oversized_upload,
)
from backend.schemas.annotations import MaskImportResult
from backend.services import mask_exchange
from backend.services.consensus import parse_statuses

router = APIRouter(prefix="/datasets", tags=["masks"])
StatusesQuery = Annotated[str, Query(description="accepted, submitted, or both comma-separated")]


@router.get(
    "/{dataset_id}/masks/export",
    response_class=Response,
    responses=content(
        "application/zip", "application/json", description="A zip of PNGs, or COCO RLE JSON."
    ),
)
def export_masks(
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    mask_set: OptionalMaskSetDep,
    format: Annotated[Literal["png", "coco"], Query()] = "png",  # noqa: A002
    statuses: StatusesQuery = "accepted",
    annotator_id: QueryId = None,
    threshold: Annotated[float, Query(gt=0.0, le=1.0)] = 0.5,
) -> Response:
    """A dataset's masks (or a mask set's consensus) as a zip of PNGs or as COCO RLE JSON."""
    data, media, name = mask_exchange.export_masks(
        db,
        dataset,
        fmt=format,
        statuses=parse_statuses(statuses),
        annotator_id=annotator_id,
        mask_set=mask_set,
        threshold=threshold,
    )
    return Response(
        content=data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post(
    "/{dataset_id}/masks/import",
    response_model=MaskImportResult,
    status_code=201,
    max_body_size=get_settings().max_upload_bytes,
)
def import_masks(
    request: Request,
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=50)],
    format: Annotated[Literal["png", "coco", "cub"], Form()] = "png",  # noqa: A002
    status: Annotated[Literal["accepted", "submitted"], Form()] = "accepted",
    match_by: Annotated[Literal["auto", "filename", "id"], Form()] = "auto",
) -> MaskImportResult:
    """Import masks (zip of PNGs, COCO RLE JSON, or CUB-style soft segmentations) as the
    pseudo-annotator import:<name>; all files are checked before anything is stored."""
    refuse_oversized_upload(request, file.size)
    user, image_ids = mask_exchange.import_masks(
        db,
        dataset,
        file.file,
        fmt=format,
        name=name.strip(),
        status=status,
        match_by=match_by,
    )
    return MaskImportResult(annotator=user.username, imported=len(image_ids), image_ids=image_ids)


ROUTERS = [router]
