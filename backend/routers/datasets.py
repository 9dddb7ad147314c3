import mimetypes
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from backend.core.config import get_settings
from backend.core.openapi import content
from backend.core.storage import serve
from backend.deps import (
    DB_INT_MAX,
    DatasetDep,
    ImageDep,
    ResearcherUser,
    SessionDep,
    StaffUser,
    StorageDep,
    refuse_oversized_upload,
)
from backend.models import Annotation, Dataset, DatasetClass, Image
from backend.schemas.datasets import (
    AssignmentAnnotator,
    AssignmentsUpdate,
    ClassPublic,
    DatasetAssignments,
    DatasetDetail,
    DatasetPublic,
    DatasetsPublic,
    DatasetUpdate,
    ImagePublic,
    ImagesPublic,
)
from backend.services import assignments as assign
from backend.services import datasets as datasets_service
from backend.services.datasets import dataset_counts, import_dataset, zip_entries

router = APIRouter(prefix="/datasets", tags=["datasets"])
images_router = APIRouter(prefix="/images", tags=["images"])


def _public(db: Session, datasets: list[Dataset]) -> list[DatasetPublic]:
    counts = dataset_counts(db, [d.id for d in datasets])
    out = []
    for d in datasets:
        item = DatasetPublic.model_validate(d)
        item.num_classes, item.num_images = counts[d.id]
        out.append(item)
    return out


@router.get("", response_model=DatasetsPublic)
def list_datasets(_: ResearcherUser, db: SessionDep) -> DatasetsPublic:
    """All datasets with their sizes."""
    datasets = list(db.scalars(select(Dataset).order_by(Dataset.id.desc())).all())
    return DatasetsPublic(data=_public(db, datasets), count=len(datasets))


@router.post(
    "/import",
    response_model=DatasetPublic,
    status_code=201,
    max_body_size=get_settings().max_upload_bytes,
)
def import_zip(
    request: Request,
    user: ResearcherUser,
    db: SessionDep,
    storage: StorageDep,
    name: Annotated[str, Form(max_length=200)],
    file: Annotated[UploadFile, File()],
    description: Annotated[str, Form(max_length=10_000)] = "",
    test_fraction: Annotated[float, Form(ge=0.0, le=0.9)] = 0.2,
) -> DatasetPublic:
    """Import a dataset uploaded as a zip, recognised by its layout: an ImageFolder tree (a
    folder per class, optionally under train/ with test/ or val/), CIFAR-10 or CIFAR-100 in
    their python version, or CUB-200-2011 (its segmentations become accepted masks)."""
    refuse_oversized_upload(request, file.size)
    dataset = import_dataset(
        db,
        storage,
        zip_entries(file.file),
        name=name,
        description=description,
        created_by=user,
        test_fraction=test_fraction,
    )
    return _public(db, [dataset])[0]


@router.get("/{dataset_id}", response_model=DatasetDetail)
def get_dataset(dataset: DatasetDep, _: ResearcherUser, db: SessionDep) -> DatasetDetail:
    """One dataset with its classes and split sizes."""
    per_class = dict(
        db.execute(
            select(Image.class_id, func.count())
            .where(Image.dataset_id == dataset.id)
            .group_by(Image.class_id)
        ).all()
    )
    splits = dict(
        db.execute(
            select(Image.split, func.count())
            .where(Image.dataset_id == dataset.id)
            .group_by(Image.split)
        ).all()
    )
    base = _public(db, [dataset])[0]
    return DatasetDetail(
        **base.model_dump(),
        classes=[
            ClassPublic(id=c.id, name=c.name, index=c.index, num_images=per_class.get(c.id, 0))
            for c in dataset.classes
        ],
        splits={"train": splits.get("train", 0), "test": splits.get("test", 0)},
    )


@router.patch("/{dataset_id}", response_model=DatasetPublic)
def update_dataset(
    dataset: DatasetDep, body: DatasetUpdate, _: ResearcherUser, db: SessionDep
) -> DatasetPublic:
    """Change a dataset's description, annotator instructions, annotators per image or
    proposals."""
    changes = body.model_dump(exclude_none=True)
    if "proposals" in body.model_fields_set:  # null turns them off
        changes["proposals"] = body.proposals
    datasets_service.update_dataset(db, dataset, changes)
    return _public(db, [dataset])[0]


@router.get("/{dataset_id}/images", response_model=ImagesPublic)
def list_images(
    dataset: DatasetDep,
    _: ResearcherUser,
    db: SessionDep,
    offset: Annotated[int, Query(ge=0, le=DB_INT_MAX)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    split: Annotated[str | None, Query(pattern="^(train|test)$")] = None,
) -> ImagesPublic:
    """A page of a dataset's images."""
    where = [Image.dataset_id == dataset.id]
    if split:
        where.append(Image.split == split)
    total = db.scalar(select(func.count()).select_from(Image).where(*where)) or 0
    n_ann = (
        select(Annotation.image_id, func.count().label("n"))
        .group_by(Annotation.image_id)
        .subquery()
    )
    rows = db.execute(
        select(Image, DatasetClass, func.coalesce(n_ann.c.n, 0))
        .join(DatasetClass, Image.class_id == DatasetClass.id)
        .outerjoin(n_ann, n_ann.c.image_id == Image.id)
        .where(*where)
        .order_by(Image.id)
        .offset(offset)
        .limit(limit)
    ).all()
    data = [
        ImagePublic(
            id=img.id,
            filename=img.filename,
            width=img.width,
            height=img.height,
            label=cls.index,
            class_name=cls.name,
            split=img.split,
            num_annotations=n,
        )
        for img, cls, n in rows
    ]
    return ImagesPublic(data=data, count=total)


def _assignments(dataset: Dataset, found: assign.Assignments) -> DatasetAssignments:
    return DatasetAssignments(
        dataset_id=dataset.id,
        open_to_all=not found.assigned_user_ids,
        assigned_user_ids=found.assigned_user_ids,
        annotators=[
            AssignmentAnnotator(id=i, username=name, assigned=on)
            for i, name, on in found.annotators
        ],
    )


@router.get("/{dataset_id}/assignments", response_model=DatasetAssignments)
def get_assignments(dataset: DatasetDep, _: ResearcherUser, db: SessionDep) -> DatasetAssignments:
    """The annotators assigned to a dataset (none: open to every annotator), and every active
    annotator one could assign."""
    return _assignments(dataset, assign.assignments(db, dataset))


@router.put("/{dataset_id}/assignments", response_model=DatasetAssignments)
def put_assignments(
    dataset: DatasetDep, body: AssignmentsUpdate, _: ResearcherUser, db: SessionDep
) -> DatasetAssignments:
    """Set the annotators who may work on a dataset ([] opens it to every annotator)."""
    return _assignments(dataset, assign.set_assignments(db, dataset, body.user_ids))


@images_router.get(
    "/{image_id}/file", responses=content("image/*", description="The image file as stored.")
)
def image_file(image: ImageDep, _: StaffUser, storage: StorageDep) -> Response:
    """The image's original file (streamed from the object store when there is one)."""
    media_type = mimetypes.guess_type(image.storage_key)[0] or "application/octet-stream"
    return serve(
        storage,
        image.storage_key,
        media_type,
        headers={"Cache-Control": "private, max-age=3600"},
        missing="The image file is missing from storage.",
    )


ROUTERS = [router, images_router]
