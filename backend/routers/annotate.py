"""The annotator's side: their queue, the image they work on, skips, mask saves and submit."""

from __future__ import annotations

import base64
import threading
from typing import Any, TypeVar

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.errors import Invalid
from backend.core.openapi import LOGIN_RESPONSES
from backend.db import get_sessionmaker
from backend.deps import (
    AnnotatorUser,
    ImageDep,
    PathId,
    QueryId,
    SessionDep,
    StorageDep,
    ensure_role,
    get_current_user,
    signed_token,
)
from backend.deps import find_image as lookup_image
from backend.models import Annotation, AnnotationRevision, Dataset, DatasetClass, Image, User
from backend.schemas.annotations import (
    AnnotateDataset,
    AnnotateDatasets,
    AnnotateImage,
    AnnotateItem,
    AnnotationState,
    MaskSave,
    MaskSaved,
    ProposalMap,
    RefineRequest,
    RefineResult,
    SkipRequest,
    SubmitRequest,
    SubmitResult,
    SuperpixelMap,
)
from backend.services import masks as svc
from backend.services.masks import aids

router = APIRouter(prefix="/annotate", tags=["annotate"])
BaseModelT = TypeVar("BaseModelT", bound=BaseModel)


def _json_body_doc(model: type[BaseModel]) -> dict[str, Any]:
    """The OpenAPI request body of a route that reads its JSON body itself (after the login
    check, so a stranger's body is never read)."""
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": model.model_json_schema()}},
        }
    }


# Saves decoding and writing at once, per server process. More would not go faster on a few
# cores; it would only hold more database connections (PostgreSQL allows ~100 in all).
_SAVE_SLOTS = threading.BoundedSemaphore(3)
ANNOTATOR = ("annotator",)


def _item(
    db: Session,
    user: User,
    image: Image,
    claimed_now: bool = False,
    dataset: Dataset | None = None,
) -> AnnotateItem:
    """The image as the page shows it, with this annotator's mask of it (none for an image
    the queue claimed for them in this request: nothing to read)."""
    dataset = dataset or db.get(Dataset, image.dataset_id)
    cls = db.get(DatasetClass, image.class_id)
    ann = (
        None
        if claimed_now
        else db.scalar(
            select(Annotation).where(
                Annotation.image_id == image.id, Annotation.annotator_id == user.id
            )
        )
    )
    state = None
    # A claim handed out by /next (no save yet) is not a mask: the page sees null, as for a
    # fresh image, and knows it must save before submitting.
    if ann is not None and ann.latest_revision > 0:
        rev = db.scalar(
            select(AnnotationRevision).where(
                AnnotationRevision.annotation_id == ann.id,
                AnnotationRevision.revision == ann.latest_revision,
            )
        )
        assert rev is not None  # latest_revision is written with its revision row
        data = (
            rev.mask_bytes
            if rev.mask_format == "png"
            else svc.mask_to_png(svc.load_revision_mask(rev))
        )
        png = base64.b64encode(data).decode()
        state = AnnotationState(
            id=ann.id,
            revision=ann.latest_revision,
            status=ann.status,
            mask_png_base64=png,
            active_ms=ann.active_ms,
            review_comment=ann.review_comment,
            provenance=rev.provenance,
            proposal_source=rev.proposal_source,
        )
    return AnnotateItem(
        image=AnnotateImage(
            id=image.id,
            width=image.width,
            height=image.height,
            class_name=cls.name if cls else "",
            dataset_id=image.dataset_id,
            dataset_name=dataset.name if dataset else "",
            instructions=dataset.instructions if dataset else "",
            file_url=f"/api/images/{image.id}/file",
            proposals=dataset.proposals if dataset else None,
        ),
        annotation=state,
        remaining=svc.remaining(db, user, image.dataset_id),
    )


@router.get("/datasets", response_model=AnnotateDatasets, response_model_exclude_none=True)
def my_datasets(user: AnnotatorUser, db: SessionDep) -> AnnotateDatasets:
    """Datasets open to this annotator with images still waiting for them, and how many of
    their masks a reviewer returned."""
    counts = svc.remaining_by_dataset(db, user)
    returned = svc.returned_by_dataset(db, user)
    rows = db.execute(
        select(Dataset.id, Dataset.name).where(Dataset.id.in_(list(counts))).order_by(Dataset.id)
    ).all()
    return AnnotateDatasets(
        data=[
            AnnotateDataset(id=i, name=n, remaining=counts[i], returned=returned.get(i) or None)
            for i, n in rows
            if counts[i]
        ]
    )


# /next and /skip are what 50 annotators ask at once: each runs as one function in one worker
# thread, with its own session and login check, instead of a thread hop per dependency.
@router.get(
    "/next",
    response_model=AnnotateItem,
    responses={**LOGIN_RESPONSES, 204: {"description": "Queue empty"}},
)
async def next_image(request: Request, dataset_id: QueryId = None) -> AnnotateItem | Response:
    """The next image of this annotator's queue (claimed for them); 204 when it is empty."""
    return await run_in_threadpool(_next, request, dataset_id)


def _next(request: Request, dataset_id: int | None) -> AnnotateItem | Response:
    with get_sessionmaker()() as db:
        # what the claim loaded (its dataset, the image) stays loaded for the answer, instead
        # of being read again after the commit
        db.expire_on_commit = False
        user = ensure_role(get_current_user(request, db), ANNOTATOR)
        found = svc.next_for(db, user, dataset_id)
        if found.image is None:
            return Response(status_code=204)
        return _item(db, user, found.image, found.claimed_now, found.dataset)


@router.get("/images/{image_id}", response_model=AnnotateItem)
def get_image(image: ImageDep, user: AnnotatorUser, db: SessionDep) -> AnnotateItem:
    """One image with this annotator's current mask (to resume after a reload)."""
    svc.check_dataset_open(db, user, image.dataset_id)
    return _item(db, user, image)


@router.post(
    "/images/{image_id}/skip",
    status_code=204,
    responses=LOGIN_RESPONSES,
    openapi_extra=_json_body_doc(SkipRequest),
)
async def skip(image_id: PathId, request: Request) -> Response:
    """Skip an image, with a reason; it never comes back to this annotator."""
    signed_token(request)  # a stranger's body is never read
    raw = await _read_limited(request, get_settings().max_json_body_bytes)
    return await run_in_threadpool(_skip, request, image_id, raw)


def _body(model: type[BaseModelT], raw: bytes) -> BaseModelT:
    """The request body as `model`, or the 422 FastAPI would have answered."""
    try:
        return model.model_validate_json(raw or b"null")
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
        raise RequestValidationError(errors) from None


def _skip(request: Request, image_id: int, raw: bytes) -> Response:
    with get_sessionmaker()() as db:
        user = ensure_role(get_current_user(request, db), ANNOTATOR)
        image = lookup_image(image_id, db, user)
        body = _body(SkipRequest, raw)
        svc.check_dataset_open(db, user, image.dataset_id)
        svc.skip_image(db, user, image, body.reason)
    return Response(status_code=204)


async def _read_limited(request: Request, limit: int) -> bytes:
    length = request.headers.get("content-length")
    if length is not None:
        try:
            declared = int(length)
        except ValueError:
            raise HTTPException(400, detail="The Content-Length header is not a number.") from None
        if declared > limit:
            raise HTTPException(413, detail="The mask is larger than the allowed size.")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise HTTPException(413, detail="The mask is larger than the allowed size.")
    return bytes(body)


def _save(request: Request, image_id: int, raw: bytes) -> MaskSaved:
    """Log-in check, lookups and the save, in one bounded slot: a connection is taken only
    here, so a burst of saves never holds more than a few database connections. (The hot
    path opens its own session instead of using dependencies: each sync dependency would
    cost a thread hop per request.)"""
    with _SAVE_SLOTS, get_sessionmaker()() as db:
        user = ensure_role(get_current_user(request, db), ANNOTATOR)
        image = lookup_image(image_id, db, user)
        return _save_now(db, user, image, _body(MaskSave, raw))


def _save_now(db: Session, user: User, image: Image, body: MaskSave) -> MaskSaved:
    """The save of an image that lookup_image found open to this annotator (its dataset's
    check is that lookup's, in the same transaction)."""
    if (body.width, body.height) != (image.width, image.height):
        raise Invalid(
            f"The mask is declared as {body.width}x{body.height} pixels but the image is "
            f"{image.width}x{image.height}."
        )
    mask = svc.png_to_mask(
        svc.decode_base64(body.mask_png_base64), expected_size=(body.width, body.height)
    )
    result = svc.save_mask(
        db,
        user,
        image,
        save_id=body.save_id,
        mask=mask,
        active_ms=body.active_ms,
        provenance=body.provenance,
        proposal_source=body.proposal_source,
    )
    return MaskSaved(
        annotation_id=result.annotation.id,
        revision=result.revision.revision,
        status=result.annotation.status,
        saved_at=result.revision.created_at,
    )


@router.put(
    "/images/{image_id}/mask",
    # the route streams the body against max_mask_bytes itself (with its own sentence); the
    # hard cap above it only guards against a lying Content-Length
    max_body_size=2 * get_settings().max_mask_bytes,
    response_model=MaskSaved,
    responses=LOGIN_RESPONSES,  # checked in the route (no dependency on the hot path)
    openapi_extra=_json_body_doc(MaskSave),
)
async def save_mask(image_id: PathId, request: Request) -> MaskSaved:
    """Save the current mask as a new revision (idempotent per save_id)."""
    signed_token(request)  # a stranger's body is never read
    raw = await _read_limited(request, get_settings().max_mask_bytes)
    return await run_in_threadpool(_save, request, image_id, raw)


@router.post(
    "/images/{image_id}/submit", response_model=SubmitResult, response_model_exclude_none=True
)
def submit(
    image: ImageDep, user: AnnotatorUser, db: SessionDep, body: SubmitRequest | None = None
) -> SubmitResult:
    """Submit this annotator's saved mask for review (an empty one only when confirmed)."""
    svc.check_dataset_open(db, user, image.dataset_id)
    ann, flags = svc.submit(
        db,
        user,
        image,
        body.save_id_of_last_save if body else None,
        confirm_empty=body.confirm_empty if body else False,
    )
    return SubmitResult(status=ann.status, flags=flags or None)


@router.get("/images/{image_id}/superpixels", response_model=SuperpixelMap)
def image_superpixels(
    image: ImageDep, user: AnnotatorUser, db: SessionDep, storage: StorageDep, size: str = "medium"
) -> SuperpixelMap:
    """The image's SLIC superpixels at a size (small, medium, large), for the superpixel brush."""
    svc.check_dataset_open(db, user, image.dataset_id)
    label_map = aids.superpixels(image, size, storage)
    return SuperpixelMap(
        size=size,
        width=image.width,
        height=image.height,
        count=label_map.count,
        labels=base64.b64encode(label_map.labels_zlib).decode(),
    )


@router.post("/images/{image_id}/refine", response_model=RefineResult)
def refine_mask(
    image: ImageDep, user: AnnotatorUser, db: SessionDep, storage: StorageDep, body: RefineRequest
) -> RefineResult:
    """GrabCut's mask of the object in a box or under a rough mask: a proposal to accept."""
    svc.check_dataset_open(db, user, image.dataset_id)
    rough = None
    if body.mask_png_base64 is not None:
        rough = svc.png_to_mask(
            svc.decode_base64(body.mask_png_base64), expected_size=(image.width, image.height)
        )
    refined = aids.refine(image, storage, box=body.box, mask=rough)
    return RefineResult(
        mask_png_base64=base64.b64encode(svc.mask_to_png(refined)).decode(),
        area=int(refined.sum()),
    )


@router.get("/images/{image_id}/proposal", response_model=ProposalMap)
def image_proposal(
    image: ImageDep, user: AnnotatorUser, db: SessionDep, storage: StorageDep
) -> ProposalMap:
    """The dataset's machine proposal for the image (only where its proposals are on)."""
    svc.check_dataset_open(db, user, image.dataset_id)
    dataset = db.get(Dataset, image.dataset_id)
    assert dataset is not None  # the image's dataset
    source, values = aids.proposal_map(dataset, image, storage)
    return ProposalMap(
        source=source, map_png_base64=base64.b64encode(svc.grey_png(values)).decode()
    )


ROUTERS = [router]
