"""One annotation's mask, at its newest revision or any earlier one (researchers only)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from backend.core.openapi import PNG
from backend.deps import AnnotationDep, SessionDep
from backend.services.masks.codec import load_revision_mask, mask_to_png
from backend.services.reviews import revision_of

router = APIRouter(prefix="/annotations", tags=["reviews"])
PNG_HEADERS = {"Cache-Control": "no-store"}


@router.get("/{annotation_id}/mask.png", response_class=Response, responses=PNG)
def annotation_mask(
    ann: AnnotationDep,
    db: SessionDep,
    revision: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    """One annotation's mask (its newest revision, or the one asked for) as a 1-bit PNG."""
    rev = revision_of(db, ann, revision)
    data = rev.mask_bytes if rev.mask_format == "png" else mask_to_png(load_revision_mask(rev))
    return Response(content=data, media_type="image/png", headers=PNG_HEADERS)


ROUTERS = [router]
