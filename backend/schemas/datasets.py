from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from backend.schemas.common import ORMModel


class ClassPublic(ORMModel):
    id: int
    name: str
    index: int
    num_images: int = 0


class DatasetPublic(ORMModel):
    id: int
    name: str
    description: str
    instructions: str
    annotators_per_image: int
    # machine proposals offered to its annotators: null (off), "saliency" or "run:{id}"
    proposals: str | None = None
    content_hash: str
    num_classes: int = 0
    num_images: int = 0
    created_at: datetime


class DatasetDetail(DatasetPublic):
    classes: list[ClassPublic]
    splits: dict[str, int]


class DatasetsPublic(BaseModel):
    data: list[DatasetPublic]
    count: int


class DatasetUpdate(BaseModel):
    description: str | None = Field(default=None, max_length=10_000)
    instructions: str | None = Field(default=None, max_length=10_000)
    annotators_per_image: int | None = Field(default=None, ge=1, le=100)
    # null or "off" turns proposals off; "saliency" (a classical spectral-residual map) or
    # "run:{id}" (a finished run's salience maps of this dataset) turns them on
    proposals: str | None = Field(default=None, max_length=32)


class ImagePublic(ORMModel):
    id: int
    filename: str
    width: int
    height: int
    label: int
    class_name: str
    split: str
    num_annotations: int = 0


class ImagesPublic(BaseModel):
    data: list[ImagePublic]
    count: int


class AssignmentAnnotator(BaseModel):
    id: int
    username: str
    assigned: bool


class DatasetAssignments(BaseModel):
    dataset_id: int
    # true while nobody is assigned: every annotator sees the dataset
    open_to_all: bool
    assigned_user_ids: list[int]
    # every active annotator, assigned or not (what the dataset page offers)
    annotators: list[AssignmentAnnotator]


class AssignmentsUpdate(BaseModel):
    # the annotators who may work on the dataset; [] opens it to every annotator again
    user_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(max_length=1000)
