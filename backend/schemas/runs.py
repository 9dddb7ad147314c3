"""API schemas of training runs: the launch form, the runs table, a run's page, comparisons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field, create_model

import runconfig
from backend.schemas.common import DbId, ORMModel
from backend.schemas.work_queue import QueuePlace


class _RunForm(BaseModel):
    """The launch form's own fields: what the run is called and trained on, and several seeds
    (one run each, grouped)."""

    dataset_id: DbId
    name: str = Field(default="", max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=20)
    seeds: list[int] | None = None


def _settings() -> dict[str, Any]:
    """Every setting the launch form gives (runconfig), each optional (unset: the library's
    default), and the app objects it names in place of paths (runconfig.REFS). The checks are
    runconfig's, in the service: one pass that names every bad field."""
    fields: dict[str, Any] = {}
    for name in runconfig.FORM_FIELDS:
        spec = runconfig.SETTINGS[name]
        unit = f" Unit: {spec.unit}." if spec.unit else ""
        fields[name] = (runconfig.TYPES[name] | None, Field(None, description=spec.doc + unit))
    for ref in runconfig.REFS:
        fields[ref.name] = (DbId | None, Field(None, description=ref.doc))
    return fields


_RunSettings = create_model("RunSettings", __base__=_RunForm, **_settings())


class RunCreate(_RunSettings):  # its settings' fields built from runconfig
    """The launch form. Unset settings take the training library's defaults.

    Budgets (eps, alpha, part_eps_low, eval_eps) are in pixel units: 8/255 = 8 grey levels.
    """


class RunEpochPublic(ORMModel):
    epoch: int
    metrics: dict[str, Any]
    created_at: datetime


class RunBatchPublic(ORMModel):
    """One point of the live curves: the mean training loss and accuracy over the batches
    since the previous point, at `step` batches since the run began."""

    step: int
    epoch: int
    loss: float
    accuracy: float
    images_per_s: float | None
    created_at: datetime


class RunEvent(BaseModel):
    """One event of a run's live progress: run, log, epoch, batch or end."""

    event: str
    data: Any


class RunEvents(BaseModel):
    """The events since the given step and epoch as they stand now (GET .../events asked
    for JSON rather than a stream), and whether the run has finished."""

    events: list[RunEvent]
    finished: bool


class RunPublic(ORMModel):
    id: int
    name: str
    group_key: str
    tags: list[Any]
    dataset_id: int
    dataset_name: str = ""
    mask_set_id: int | None
    method: str
    config: dict[str, Any]
    state: str
    # training and the final evaluation, weighed by their work: 1 only once the run has ended
    progress: float
    # the run's work as its worker reports it: phase ("training", "evaluating", then its end
    # state), units (runconfig.cost) of training and evaluation, the measured pace, and while
    # it evaluates the stage (label, images_done of images, units_done of units_total)
    work: dict[str, Any] | None = None
    current_epoch: int
    total_epochs: int
    final_metrics: dict[str, Any] | None
    error: str | None
    cancel_requested: bool
    attempts: int
    cloned_from_id: int | None
    created_by_id: int | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None


class RunDetail(RunPublic):
    reproducibility: dict[str, Any]
    log_tail: str
    worker_hostname: str | None
    checkpoint_key: str | None
    epochs: list[RunEpochPublic]
    # the per-batch points (evenly thinned to at most 4000 on a long run)
    batches: list[RunBatchPublic] = Field(default_factory=list)
    batches_per_epoch: int | None = None
    # the latest figures the worker measured: device, memory_bytes (peak), images_per_s
    system: dict[str, Any] | None = None
    # seconds until the run should end, from the measured batch rate
    time_left_s: float | None = None
    downloads: dict[str, str] = Field(default_factory=dict)
    # when the workers' recovery last sent the run's message again, and why (a quiet worker,
    # a lost message); None when it never had to
    resent_at: datetime | None = None
    resent_why: str | None = None
    # while it waits: its position in the queue, the estimated start, the workers listening
    queue: QueuePlace | None = None


class RunsPublic(BaseModel):
    data: list[RunPublic]
    count: int


class RunClone(BaseModel):
    """A launch form filled with an earlier run's settings."""

    cloned_from_id: int
    form: dict[str, Any]


class RunCompare(BaseModel):
    runs: list[RunPublic]
    # settings that differ between the runs: key -> one value per run (in the order of runs)
    differences: dict[str, list[Any]]
    # settings the runs share
    same: dict[str, Any]
    # run id -> per-epoch metrics
    curves: dict[str, list[dict[str, Any]]]
    # run id -> {eps: PGD accuracy}
    robust_vs_eps: dict[str, dict[str, float]]


class GroupStat(BaseModel):
    mean: float
    std: float
    n: int
    # the 95 % t interval over seeds (None for one seed)
    low: float | None = None
    high: float | None = None


class RunGroup(BaseModel):
    value: Any
    run_ids: list[int]
    seeds: list[Any]
    metrics: dict[str, GroupStat]
    # metric -> this group minus the baseline group, paired by seed (runconfig.stats)
    paired: dict[str, dict[str, Any]] = Field(default_factory=dict)


class RunGroups(BaseModel):
    by: str
    groups: list[RunGroup]


class SalienceSample(BaseModel):
    image_id: int | None
    label: str
    predicted: str | None = None
    agreement: float | None = None
    image_url: str
    model_url: str
    human_url: str | None


class RunSalience(BaseModel):
    available: bool
    kind: str | None = None
    agreement: dict[str, Any] | None = None
    samples: list[SalienceSample] = Field(default_factory=list)
