"""API schemas of annotation (the annotator's queue and saves), review, consensus and mask sets."""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, field_validator, model_validator

from backend.models import PROVENANCE_TOOLS
from backend.schemas.common import ORMModel

# the client's shares are rounded: they may add up to 1 within this
PROVENANCE_SLACK = 0.01
PROPOSAL_SOURCE = re.compile(r"saliency|run:[1-9][0-9]{0,9}")


class AnnotateDataset(BaseModel):
    id: int
    name: str
    remaining: int
    # masks a reviewer returned to this annotator (first in their queue); left out when none
    returned: int | None = None


class AnnotateDatasets(BaseModel):
    data: list[AnnotateDataset]


class AnnotateImage(BaseModel):
    id: int
    width: int
    height: int
    class_name: str
    dataset_id: int
    dataset_name: str
    instructions: str
    file_url: str
    # the dataset's machine proposals: null (off), "saliency" or "run:{id}"
    proposals: str | None = None


class AnnotationState(BaseModel):
    id: int
    revision: int
    status: str
    mask_png_base64: str | None
    active_ms: int
    review_comment: str = ""
    # the revision's provenance (see MaskSave), for the page to carry it into the next save
    provenance: dict[str, float] | None = None
    proposal_source: str | None = None


class AnnotateItem(BaseModel):
    image: AnnotateImage
    annotation: AnnotationState | None
    remaining: int


class SkipRequest(BaseModel):
    reason: str = Field(max_length=2000)

    @field_validator("reason")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        value = value.strip()
        if not value:
            raise ValueError("say why you skip this image")
        return value


class MaskSave(BaseModel):
    # chosen by the browser once per save: a retried request with it is recognised
    save_id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
    mask_png_base64: str = Field(min_length=1)
    width: int = Field(ge=1, le=20_000)
    height: int = Field(ge=1, le=20_000)
    # active time on task so far, in milliseconds
    active_ms: int = Field(default=0, ge=0, le=10 * 24 * 3600 * 1000)
    # which drawing aids made the mask: the share of its salient pixels each contributed
    # (keys from PROVENANCE_TOOLS, shares in [0, 1] summing to 1; {} for an empty mask)
    provenance: dict[str, float] | None = None
    # the machine proposal the drawing started from ("saliency" or "run:{id}"), if any
    proposal_source: str | None = Field(default=None, max_length=32)

    @field_validator("provenance")
    @classmethod
    def _shares(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        if value is None:
            return None
        unknown = sorted(set(value) - set(PROVENANCE_TOOLS))
        if unknown:
            raise ValueError(
                f"the provenance names {', '.join(unknown)}, not one of "
                f"{', '.join(PROVENANCE_TOOLS)}"
            )
        for tool, share in value.items():
            if not math.isfinite(share) or not 0 <= share <= 1:
                raise ValueError(f"the share of {tool} must be between 0 and 1")
        total = sum(value.values())
        if value and abs(total - 1) > PROVENANCE_SLACK:
            raise ValueError(f"the provenance shares add up to {total:.3f}, not 1")
        return {tool: round(share, 4) for tool, share in value.items() if share > 0}

    @field_validator("proposal_source")
    @classmethod
    def _source(cls, value: str | None) -> str | None:
        if value is not None and not PROPOSAL_SOURCE.fullmatch(value):
            raise ValueError('the proposal source must be "saliency" or "run:" and a run id')
        return value

    @model_validator(mode="after")
    def _proposal_named(self) -> MaskSave:
        if self.provenance and self.provenance.get("proposal") and not self.proposal_source:
            raise ValueError("a mask with pixels from a proposal must name the proposal's source")
        return self


class SuperpixelMap(BaseModel):
    size: str
    width: int
    height: int
    # labels 0..count-1, one per pixel, row-major
    count: int
    # base64 of the zlib-compressed little-endian uint16 labels
    labels: str


class RefineRequest(BaseModel):
    # [x0, y0, x1, y1] in image pixels (x1, y1 exclusive) around the object ...
    box: list[int] | None = Field(default=None, min_length=4, max_length=4)
    # ... or a rough mask to refine (a PNG as the save takes it)
    mask_png_base64: str | None = Field(default=None, min_length=1)


class RefineResult(BaseModel):
    # the refined mask, a 1-bit PNG, to show as a proposal
    mask_png_base64: str
    area: int


class ProposalMap(BaseModel):
    source: str
    # an 8-bit grey PNG at the image's size: 255 the most salient
    map_png_base64: str


class MaskSaved(BaseModel):
    annotation_id: int
    revision: int
    status: str
    saved_at: datetime


class SubmitRequest(BaseModel):
    # the save_id of the browser's last save: refused (409) until that save has arrived
    save_id_of_last_save: str | None = Field(default=None, max_length=64)
    # the annotator confirmed that an empty mask is meant (nothing salient): else 409
    confirm_empty: bool = False


class SubmitResult(BaseModel):
    status: str
    # "empty" or "tiny" (under TINY_FRACTION of the image), which the review flags too;
    # left out for an ordinary mask
    flags: list[str] | None = None


# ---------------------------------------------------------------------------- review


class ReviewItem(BaseModel):
    annotation_id: int
    image_id: int
    dataset_id: int
    filename: str
    class_name: str
    width: int
    height: int
    annotator_id: int
    annotator: str
    status: str
    revision: int
    area: int
    active_ms: int
    submitted_at: datetime | None
    review_comment: str
    mask_url: str
    image_url: str
    # "empty" (no pixel) or "tiny" (under TINY_FRACTION of the image)
    flags: list[str] = []
    # other annotators' masks of this image with a revision (for the side-by-side view)
    num_masks_of_image: int = 1
    # which drawing aids made it (share of its pixels per tool) and the proposal it started
    # from: what the annotator was shown matters to a review of human salience
    provenance: dict[str, float] | None = None
    proposal_source: str | None = None


class ReviewQueue(BaseModel):
    data: list[ReviewItem]
    # how many masks match the filter in all (not only after the cursor)
    count: int
    # pass as `cursor` for the page after this one; null on the last page. Keyset
    # pagination: masks decided meanwhile leave the list without making the next page skip.
    next_cursor: str | None = None


class ReviewDecision(BaseModel):
    decision: Literal["accept", "reject"]
    comment: str = Field(default="", max_length=5000)


class ReviewResult(BaseModel):
    annotation_id: int
    status: str
    review_comment: str
    reviewed_at: datetime | None


class ReviewBulkDecision(BaseModel):
    annotation_ids: list[Annotated[int, Field(ge=1, le=2**31 - 1)]] = Field(
        min_length=1, max_length=500
    )
    decision: Literal["accept", "reject"]
    comment: str = Field(default="", max_length=5000)

    @field_validator("annotation_ids")
    @classmethod
    def _unique(cls, value: list[int]) -> list[int]:
        return list(dict.fromkeys(value))


class ReviewSkipped(BaseModel):
    annotation_id: int
    reason: str


class ReviewBulkResult(BaseModel):
    data: list[ReviewResult]
    # masks left as they were, each with the sentence why (not found, still a draft)
    skipped: list[ReviewSkipped]


class ImageMask(BaseModel):
    annotation_id: int
    annotator_id: int
    annotator: str
    status: str
    revision: int
    area: int
    flags: list[str]
    mask_url: str


class MaskPairIoU(BaseModel):
    a: int  # annotation ids
    b: int
    iou: float


class ImageMasksReview(BaseModel):
    image_id: int
    dataset_id: int
    filename: str
    class_name: str
    width: int
    height: int
    image_url: str
    masks: list[ImageMask]
    pairs: list[MaskPairIoU]
    mean_pairwise_iou: float | None


# ---------------------------------------------------------------------------- agreement


class ImageAgreement(BaseModel):
    image_id: int
    num_annotators: int
    # mean pairwise IoU; None with fewer than two masks
    mean_pairwise_iou: float | None


class AnnotatorQuality(BaseModel):
    annotator_id: int
    annotator: str
    num_masks: int
    # mean IoU with the binarised leave-one-out consensus of the others (None: no overlap)
    agreement_with_others: float | None
    median_active_ms: float | None
    mean_area_fraction: float


class ProvenanceAgreement(BaseModel):
    # "drawn", "assisted" (wand, superpixels, refine), "proposal" (seeded) or "unrecorded"
    kind: str
    num_masks: int
    num_images: int
    # among masks of this kind on one image (images with two or more)
    mean_pairwise_iou: float | None
    # each mask against the binarised consensus of every other mask of its image
    agreement_with_others: float | None


class DatasetAgreement(BaseModel):
    dataset_id: int
    statuses: list[str]
    threshold: float
    num_images: int
    mean_pairwise_iou: float | None
    # split-half "human ceiling": agreement of two random halves' consensus maps
    split_half_iou: float | None
    split_half_correlation: float | None
    # the whole group's reliability from the halves' correlation (Spearman-Brown)
    split_half_reliability: float | None
    splits: int
    seed: int
    images: list[ImageAgreement]
    # the agreement split by how the masks were made (services/consensus.PROVENANCE_KINDS)
    by_provenance: list[ProvenanceAgreement] = []
    annotators: list[AnnotatorQuality]


# ---------------------------------------------------------------------------- mask sets


class MaskSetCreate(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    statuses: list[Literal["submitted", "accepted"]] = Field(default=["accepted"], min_length=1)
    min_annotators: int = Field(default=1, ge=1, le=1000)
    min_agreement: float | None = Field(default=None, ge=0.0, le=1.0)
    # leave out masks seeded by a machine proposal (a proposal can anchor what people mark)
    exclude_proposals: bool = False


class MaskSetItemPublic(ORMModel):
    image_id: int
    revision_ids: list[int]
    num_annotators: int
    agreement: float | None


class MaskSetPublic(ORMModel):
    id: int
    dataset_id: int
    name: str
    filter: dict[str, Any]
    hash: str
    num_images: int
    created_at: datetime


class MaskSetFrozen(MaskSetPublic):
    """A freeze's answer: the new set (201), or the set that holds the same masks already
    (200) with a sentence saying so."""

    message: str | None = None


class MaskSetDetail(MaskSetPublic):
    items: list[MaskSetItemPublic]


class MaskSetsPublic(BaseModel):
    data: list[MaskSetPublic]
    count: int


class MaskImportResult(BaseModel):
    annotator: str
    imported: int
    image_ids: list[int]
