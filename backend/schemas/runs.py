"""API schemas of training runs: the launch form, the runs table, a run's page, comparisons."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from backend.schemas.common import DbId, ORMModel


class RunCreate(BaseModel):
    """The launch form. Unset training fields take the training library's defaults.

    Budgets (eps, alpha, part_eps_low, eval_eps) are in pixel units: 8/255 = 8 grey levels.
    """

    dataset_id: DbId
    name: str = Field(default="", max_length=200)
    tags: list[str] = Field(default_factory=list, max_length=20)
    method: str = "pgd_at"
    model: str | None = None
    eps: float | None = None
    alpha: float | None = None
    steps: int | None = None
    eps_warmup_epochs: float | None = None
    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    schedule: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    image_size: int | None = None
    augment: bool | None = None
    hflip: bool | None = None
    # one seed, or several (one run each, grouped)
    seed: int | None = None
    seeds: list[int] | None = None
    # SIP-AT masks: a frozen mask set of the dataset (human), or automatic maps from a run
    mask_set_id: DbId | None = None
    mask_source: str | None = None
    auto_mask_run_id: DbId | None = None
    mask_threshold: float | None = None
    mask_fraction: float | None = None
    # fast SIP-AT's single step: n_fgsm or fgsm_rs
    fast_attack: str | None = None
    # PART
    part_warmup_epochs: int | None = None
    part_eps_low: float | None = None
    # IGD: the teacher is a finished standard run of the same model and dataset
    igd_teacher_run_id: DbId | None = None
    igd_lambda: float | None = None
    igd_grad_point: str | None = None
    # evaluation: the final PGD grid (steps, restarts), the cheap per-epoch PGD check, and
    # AutoAttack at eps on autoattack_n test images (0 skips it)
    eval_eps: list[float] | None = None
    eval_subset: int | None = None
    eval_steps: int | None = None
    eval_restarts: int | None = None
    epoch_eval_steps: int | None = None
    autoattack_n: int | None = None
    # how it computes: precision of training and its attacks (fp32, bf16, fp16),
    # torch.compile, and where the training images come from (memory, stream or auto)
    precision: str | None = None
    compile: bool | None = None
    data_loader: str | None = None
    # processes of the run, one per GPU (more than one: DistributedDataParallel under
    # torchrun, on as many GPUs of one worker host), and BatchNorm over the whole batch then
    gpus: int | None = None
    sync_batchnorm: bool | None = None


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
    progress: float
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


class RunGroup(BaseModel):
    value: Any
    run_ids: list[int]
    seeds: list[Any]
    metrics: dict[str, GroupStat]


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
