"""The queue of background work (GET /api/queue) and a waiting item's place in it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class QueueItem(BaseModel):
    """A run, an inequality evaluation or a study's stimulus job, running or waiting."""

    kind: str  # run, evaluation or study
    id: int
    name: str
    state: str  # running or queued
    link: str  # its page, as the frontend routes it (#/runs/5)
    position: int | None = None  # waiting: 1 starts next
    worker: str | None = None  # running on; waiting: expected on
    gpus: list[str] = Field(default_factory=list)
    progress: float | None = None
    time_left_s: float | None = None  # running: until it ends
    duration_s: float | None = None  # waiting: its estimated length
    start_in_s: float | None = None  # waiting: seconds until it should start
    start_is_lower_bound: bool = False  # an item ahead has no estimate: no sooner than this
    note: str = ""


class QueueWorker(BaseModel):
    """A listening worker: its GPUs, who holds each, and what it is doing."""

    hostname: str
    queues: list[str]
    gpus: list[str]
    leases: dict[str, Any]
    job: dict[str, Any] | None
    doing: list[dict[str, Any]]
    started_at: datetime | None
    seen_at: datetime | None
    seen_s_ago: int | None


class QueuePublic(BaseModel):
    listening: int  # workers heard from within silent_after_s that consume the training queue
    silent_after_s: float
    workers: list[QueueWorker]
    running: list[QueueItem]
    queued: list[QueueItem]


class QueuePlace(BaseModel):
    """Where a waiting run or stimulus job stands."""

    position: int
    of: int
    ahead_running: int  # items running now, on every worker
    start_in_s: float | None  # None: no worker is listening
    start_is_lower_bound: bool
    duration_s: float | None
    worker: str | None
    listening: int
    note: str
