"""API schemas of the inequality evaluation: the request, the evaluation with its progress,
and its result (error rates keyed by t or r as strings, e.g. "0.002", "1")."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from backend.schemas.common import DbId, ORMModel


class InequalityCreate(BaseModel):
    # finished runs of one dataset (1..20; the service says which rule a request breaks)
    run_ids: list[DbId] = Field(default_factory=list)
    # at most this many common test images, spread over the classes (1..2000)
    n: int = 200


class InequalityImages(BaseModel):
    """The test images every run was scored on."""

    # how many there are (<= requested: only images every run classifies correctly count)
    n: int
    requested: int
    # dataset image ids (None when the export had no split and the library drew one by seed)
    image_ids: list[int] | None
    # positions in the first run's test split
    test_indices: list[int]
    # images per class name
    per_class: dict[str, int]
    # "export" (the dataset's own split) or "seeded" (drawn from the runs' shared seed)
    test_split: str


class InequalityScores(BaseModel):
    """One run's inequality tests (worker.sipat.inequality.inequality_tests)."""

    n: int
    # Gini coefficient of |input gradient|, mean over the images (0 = even, 1 = one sub-pixel)
    gini: float | None
    # error rates in [0, 1] against t (share of sub-pixels)
    inductive_noise_added: dict[str, float] = Field(default_factory=dict)
    inductive_noise_replaced: dict[str, float] = Field(default_factory=dict)
    random_noise_added: dict[str, float] = Field(default_factory=dict)
    # {"grey": {r: error rate}, "white": {...}} against the occluding squares' radius r
    inductive_occlusion: dict[str, dict[str, float]] = Field(default_factory=dict)


class InequalityResult(BaseModel):
    # the noise seed, the same for every run
    seed: int
    images: InequalityImages
    # by run id
    runs: dict[str, InequalityScores]


class InequalityPublic(ORMModel):
    id: int
    run_ids: list[int]
    dataset_id: int
    n_requested: int
    # false for a single run, scored on its own correct images (not comparable across runs)
    common_set: bool
    state: str
    progress: float
    result: InequalityResult | None = None
    error: str | None = None
    created_at: datetime
    finished_at: datetime | None = None


class InequalityEvaluationsPublic(BaseModel):
    data: list[InequalityPublic]
    count: int
