"""The researcher's side of annotation: review queue, mask images, consensus, agreement,
mask sets, and mask export / import."""

from __future__ import annotations

import json
from typing import Annotated, Literal

from fastapi import APIRouter, File, Form, HTTPException, Query, Request, Response, UploadFile
from sqlalchemy import func, select

from backend.deps import (
    DatasetDep,
    ImageDep,
    ResearcherUser,
    SessionDep,
    SettingsDep,
)
from backend.models import (
    Annotation,
    AnnotationRevision,
    DatasetClass,
    Image,
    MaskSet,
    User,
    utcnow,
)
from backend.schemas.annotations import (
    DatasetAgreement,
    ImageAgreement,
    MaskImportResult,
    MaskSetCreate,
    MaskSetDetail,
    MaskSetPublic,
    MaskSetsPublic,
    ReviewDecision,
    ReviewItem,
    ReviewQueue,
    ReviewResult,
)
from backend.services import consensus as cons
from backend.services import export as exp
from backend.services.masks import MaskError, grey_png, load_revision_mask, mask_to_png

reviews_router = APIRouter(prefix="/reviews", tags=["reviews"])
annotations_router = APIRouter(prefix="/annotations", tags=["reviews"])
images_router = APIRouter(prefix="/images", tags=["masks"])
datasets_router = APIRouter(prefix="/datasets", tags=["masks"])
mask_sets_router = APIRouter(prefix="/mask-sets", tags=["masks"])

StatusesQuery = Annotated[str, Query(description="accepted, submitted, or both comma-separated")]
PNG_HEADERS = {"Cache-Control": "no-store"}


def _refused(exc: MaskError) -> HTTPException:
    return HTTPException(exc.status_code, detail=str(exc))


def _statuses(text: str) -> list[str]:
    try:
        return cons.parse_statuses(text)
    except MaskError as exc:
        raise HTTPException(422, detail=str(exc)) from exc


def _png(data: bytes) -> Response:
    return Response(content=data, media_type="image/png", headers=PNG_HEADERS)


# ---------------------------------------------------------------------------- review


@reviews_router.get("", response_model=ReviewQueue)
def review_queue(
    _: ResearcherUser,
    db: SessionDep,
    dataset_id: Annotated[int | None, Query()] = None,
    status: Annotated[Literal["submitted", "accepted", "rejected", "draft"], Query()] = "submitted",
    annotator_id: Annotated[int | None, Query()] = None,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
):
    """Masks waiting for review (or with another status), oldest submission first."""
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
    return ReviewQueue(
        data=[
            ReviewItem(
                annotation_id=a.id,
                image_id=im.id,
                dataset_id=im.dataset_id,
                filename=im.filename,
                class_name=cls,
                width=im.width,
                height=im.height,
                annotator_id=a.annotator_id,
                annotator=user,
                status=a.status,
                revision=a.latest_revision,
                area=area,
                active_ms=a.active_ms,
                submitted_at=a.submitted_at,
                review_comment=a.review_comment,
                mask_url=f"/api/annotations/{a.id}/mask.png",
                image_url=f"/api/images/{im.id}/file",
            )
            for a, im, cls, user, area in rows
        ],
        count=total,
    )


@reviews_router.post("/{annotation_id}", response_model=ReviewResult)
def review(annotation_id: int, body: ReviewDecision, user: ResearcherUser, db: SessionDep):
    """Accept or reject a submitted mask (a rejection needs a comment and returns it to its
    annotator, first in their queue)."""
    ann = db.scalar(select(Annotation).where(Annotation.id == annotation_id).with_for_update())
    if ann is None:
        raise HTTPException(404, detail="Annotation not found.")
    if ann.status == "draft" or ann.latest_revision == 0:
        raise HTTPException(409, detail="Only a submitted mask can be reviewed.")
    comment = body.comment.strip()
    if body.decision == "reject" and not comment:
        raise HTTPException(422, detail="Say why the mask is rejected.")
    ann.status = "accepted" if body.decision == "accept" else "rejected"
    ann.review_comment = comment
    ann.reviewed_by_id = user.id
    ann.reviewed_at = utcnow()
    db.commit()
    return ReviewResult(
        annotation_id=ann.id,
        status=ann.status,
        review_comment=ann.review_comment,
        reviewed_at=ann.reviewed_at,
    )


@annotations_router.get("/{annotation_id}/mask.png", response_class=Response)
def annotation_mask(
    annotation_id: int,
    _: ResearcherUser,
    db: SessionDep,
    revision: Annotated[int | None, Query(ge=1)] = None,
):
    """One annotation's mask (its newest revision, or the one asked for) as a 1-bit PNG."""
    ann = db.get(Annotation, annotation_id)
    if ann is None:
        raise HTTPException(404, detail="Annotation not found.")
    rev = db.scalar(
        select(AnnotationRevision).where(
            AnnotationRevision.annotation_id == ann.id,
            AnnotationRevision.revision == (revision or ann.latest_revision),
        )
    )
    if rev is None:
        raise HTTPException(404, detail="Revision not found.")
    if rev.mask_format == "png":
        return _png(rev.mask_bytes)
    return _png(mask_to_png(load_revision_mask(rev)))


# ---------------------------------------------------------------------------- consensus


@images_router.get("/{image_id}/consensus.png", response_class=Response)
def consensus_png(
    image: ImageDep, _: ResearcherUser, db: SessionDep, statuses: StatusesQuery = "accepted"
):
    """The mean of the image's masks as an 8-bit grey PNG (255 = every annotator)."""
    try:
        mean = cons.image_consensus(db, image, _statuses(statuses))
    except MaskError as exc:
        raise _refused(exc) from exc
    return _png(grey_png(cons.consensus_uint8(mean)))


@images_router.get("/{image_id}/consensus-binary.png", response_class=Response)
def consensus_binary_png(
    image: ImageDep,
    _: ResearcherUser,
    db: SessionDep,
    statuses: StatusesQuery = "accepted",
    threshold: Annotated[float, Query(gt=0.0, le=1.0)] = 0.5,
):
    """The consensus binarised at a threshold (mean >= threshold), as a 1-bit PNG."""
    try:
        mean = cons.image_consensus(db, image, _statuses(statuses))
    except MaskError as exc:
        raise _refused(exc) from exc
    return _png(mask_to_png(mean >= threshold))


@images_router.get("/{image_id}/agreement", response_model=ImageAgreement)
def image_agreement(
    image: ImageDep, _: ResearcherUser, db: SessionDep, statuses: StatusesQuery = "accepted"
):
    """Mean pairwise IoU of the image's masks."""
    found = cons.load_masks(db, image_id=image.id, statuses=_statuses(statuses))
    masks = [m.mask for m in found[image.id].masks] if image.id in found else []
    return ImageAgreement(
        image_id=image.id,
        num_annotators=len(masks),
        mean_pairwise_iou=cons.mean_pairwise_iou(masks),
    )


@datasets_router.get("/{dataset_id}/agreement", response_model=DatasetAgreement)
def dataset_agreement(
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    statuses: StatusesQuery = "accepted",
    threshold: Annotated[float, Query(gt=0.0, le=1.0)] = 0.5,
    splits: Annotated[int, Query(ge=1, le=1000)] = 20,
    seed: Annotated[int, Query(ge=0)] = 0,
):
    """Agreement per image, per dataset (pairwise IoU, split-half ceiling) and per annotator."""
    return cons.dataset_agreement(
        db, dataset, statuses=_statuses(statuses), threshold=threshold, splits=splits, seed=seed
    )


# ---------------------------------------------------------------------------- mask sets


@datasets_router.post("/{dataset_id}/mask-sets", response_model=MaskSetPublic, status_code=201)
def create_mask_set(
    dataset: DatasetDep,
    body: MaskSetCreate,
    user: ResearcherUser,
    db: SessionDep,
    response: Response,
):
    """Freeze the current consensus (filtered) into a hashed mask set; 200 if it exists."""
    try:
        mask_set, created = cons.freeze_mask_set(
            db,
            dataset,
            name=body.name,
            statuses=sorted(set(body.statuses)),
            min_annotators=body.min_annotators,
            min_agreement=body.min_agreement,
            created_by=user,
        )
    except MaskError as exc:
        raise _refused(exc) from exc
    if not created:
        response.status_code = 200
    return mask_set


@datasets_router.get("/{dataset_id}/mask-sets", response_model=MaskSetsPublic)
def list_mask_sets(dataset: DatasetDep, _: ResearcherUser, db: SessionDep):
    """A dataset's mask sets, newest first."""
    rows = list(
        db.scalars(
            select(MaskSet).where(MaskSet.dataset_id == dataset.id).order_by(MaskSet.id.desc())
        ).all()
    )
    return MaskSetsPublic(data=rows, count=len(rows))


def _mask_set(db, mask_set_id: int) -> MaskSet:
    mask_set = db.get(MaskSet, mask_set_id)
    if mask_set is None:
        raise HTTPException(404, detail="Mask set not found.")
    return mask_set


@mask_sets_router.get("/{mask_set_id}", response_model=MaskSetDetail)
def get_mask_set(mask_set_id: int, _: ResearcherUser, db: SessionDep):
    """One mask set with its items (images, revision ids, agreement)."""
    return _mask_set(db, mask_set_id)


@mask_sets_router.get("/{mask_set_id}/images/{image_id}/consensus.png", response_class=Response)
def mask_set_consensus(mask_set_id: int, image_id: int, _: ResearcherUser, db: SessionDep):
    """The frozen consensus of one image of a mask set (8-bit grey PNG)."""
    mask_set = _mask_set(db, mask_set_id)
    for item in mask_set.items:
        if item.image_id == image_id:
            return _png(item.consensus_png)
    raise HTTPException(404, detail="This image is not in the mask set.")


# ---------------------------------------------------------------------------- export / import


@datasets_router.get("/{dataset_id}/masks/export", response_class=Response)
def export_masks(
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    format: Annotated[Literal["png", "coco"], Query()] = "png",  # noqa: A002
    statuses: StatusesQuery = "accepted",
    annotator_id: Annotated[int | None, Query()] = None,
    mask_set_id: Annotated[int | None, Query()] = None,
    threshold: Annotated[float, Query(gt=0.0, le=1.0)] = 0.5,
):
    """A dataset's masks (or a mask set's consensus) as a zip of PNGs or as COCO RLE JSON."""
    mask_set = _mask_set(db, mask_set_id) if mask_set_id is not None else None
    chosen = _statuses(statuses)
    stem = f"{exp._safe_dir(dataset.name)}-masks" + (f"-set{mask_set.id}" if mask_set else "")
    try:
        if format == "png":
            data = exp.export_png_zip(
                db, dataset, statuses=chosen, annotator_id=annotator_id, mask_set=mask_set
            )
            media, name = "application/zip", f"{stem}.zip"
        else:
            doc = exp.export_coco(
                db,
                dataset,
                statuses=chosen,
                annotator_id=annotator_id,
                mask_set=mask_set,
                threshold=threshold,
            )
            data, media, name = json.dumps(doc).encode(), "application/json", f"{stem}.json"
    except MaskError as exc:
        raise _refused(exc) from exc
    return Response(
        content=data,
        media_type=media,
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@datasets_router.post(
    "/{dataset_id}/masks/import", response_model=MaskImportResult, status_code=201
)
def import_masks(
    request: Request,
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    settings: SettingsDep,
    file: Annotated[UploadFile, File()],
    name: Annotated[str, Form(max_length=50)],
    format: Annotated[Literal["png", "coco", "cub"], Form()] = "png",  # noqa: A002
    status: Annotated[Literal["accepted", "submitted"], Form()] = "accepted",
    match_by: Annotated[Literal["auto", "filename", "id"], Form()] = "auto",
):
    """Import masks (zip of PNGs, COCO RLE JSON, or CUB-style soft segmentations) as the
    pseudo-annotator import:<name>; all files are checked before anything is stored."""
    length = request.headers.get("content-length")
    if (length and length.isdigit() and int(length) > settings.max_upload_bytes) or (
        file.size is not None and file.size > settings.max_upload_bytes
    ):
        raise HTTPException(413, detail="The upload is larger than the allowed size.")
    try:
        user, image_ids = exp.import_masks(
            db,
            dataset,
            file.file.read(),
            fmt=format,
            name=name.strip(),
            status=status,
            match_by=match_by,
        )
    except MaskError as exc:
        raise _refused(exc) from exc
    return MaskImportResult(annotator=user.username, imported=len(image_ids), image_ids=image_ids)


ROUTERS = [reviews_router, annotations_router, images_router, datasets_router, mask_sets_router]
