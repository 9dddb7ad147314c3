"""API schemas of sweeps: the launch (a base form or a run to clone, one or two swept settings,
seeds, a baseline arm), its preview, and a sweep's page with its table."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from backend.schemas.common import DbId, ORMModel
from backend.schemas.runs import RunCreate

Scalar = int | float | str | bool


class SweepRange(BaseModel):
    """count values from start to stop, evenly spaced (linear) or by a constant factor (log)."""

    start: float
    stop: float
    count: int = Field(ge=0, le=1000)
    scale: Literal["linear", "log"] = "linear"


class SweepAxis(BaseModel):
    """One swept setting: a list of values, or a range."""

    setting: str = Field(max_length=64)
    values: list[int | float] | None = Field(None, max_length=1000)
    range: SweepRange | None = None


class SweepCreate(BaseModel):
    """A sweep: the base form (or a finished run to clone), the settings it varies, the seeds
    every arm runs, and an optional baseline arm (the settings that set it apart, for
    example {"method": "pgd_at"}), run with the same seeds."""

    name: str = Field(default="", max_length=200)
    base: RunCreate | None = None
    clone_run_id: DbId | None = None
    axes: list[SweepAxis] = Field(default_factory=list, max_length=10)
    seeds: list[int] = Field(default_factory=list, max_length=1000)
    baseline: dict[str, Scalar] | None = Field(None, max_length=20)


class SweepPreview(BaseModel):
    runs: int
    arms: int
    seeds: int
    # the training time of every run, added up, from measured batch rates; None when no
    # comparable run has reported one
    estimated_s: float | None
    # how many of its runs train at once (the rest wait their turn)
    in_flight: int
    basis: str


class SweepPublic(ORMModel):
    id: int
    name: str
    dataset_id: int
    base: dict[str, Any]
    axes: list[Any]
    seeds: list[Any]
    baseline: dict[str, Any] | None
    in_flight: int
    created_at: datetime


class SweepDetail(BaseModel):
    sweep: SweepPublic
    # runconfig.sweep.table: arms with mean and interval, paired differences, every run
    table: dict[str, Any]
    # run id -> its name and state, for the page's links
    run_names: dict[str, str]
    finished: bool


class SweepsPublic(BaseModel):
    data: list[SweepPublic]
    count: int
