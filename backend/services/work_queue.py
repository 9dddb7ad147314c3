"""The queue of background work as one list, in the order the workers will take it: training
runs, inequality evaluations and studies' stimulus jobs (every kind goes to the training
queue, one at a time per worker), what each listening worker is doing on which GPU, and for
each item waiting its position and an estimated start.

The order is the order the broker hands messages out (first sent, first taken): a run by
when it was dispatched (a sweep's held runs, not yet sent, after every sent item), an
evaluation and a study by when they were queued. The estimated start plays the queue out
over the listening workers: each takes the next item when its current one ends (a running
run's time left, backend/services/runs/live.py); a queued run's length comes from its
configuration (runconfig.cost) at the pace recent runs of its method and model measured, an
evaluation's from recent ones; where a length is unknown, the starts after it are lower
bounds. With no worker listening there is no start to estimate: the items wait for one.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

import runconfig
from backend.core.config import Settings
from backend.models import (
    DatasetClass,
    Image,
    InequalityEvaluation,
    Study,
    TrainingRun,
    WorkerPresence,
    utcnow,
)
from backend.services import run_lifecycle as lifecycle
from backend.services import workers as presence
from backend.services.run_lifecycle import aware
from backend.services.runs import live
from backend.services.runs.sweeps import measured_rate
from runconfig import AUTOATTACK_N_CPU, AUTOATTACK_N_GPU, cost

# finished evaluations whose lengths estimate a queued one's
RECENT_EVALUATIONS = 5


@dataclass
class Item:
    """One piece of work, running or waiting."""

    kind: str  # "run", "evaluation" or "study"
    id: int
    name: str
    state: str  # "running" or "queued"
    link: str  # the page that follows it, as the frontend routes it
    position: int | None = None  # 1 = next to start (waiting items only)
    worker: str | None = None  # running on, or (waiting) expected on
    gpus: list[str] = field(default_factory=list)
    progress: float | None = None
    time_left_s: float | None = None  # running: until it ends
    duration_s: float | None = None  # waiting: how long it should take once started
    start_in_s: float | None = None  # waiting: seconds until it should start
    start_is_lower_bound: bool = False  # an item ahead has no estimate: it starts no sooner
    note: str = ""  # why it waits, when it says so (a run waiting for GPUs, a held sweep run)
    _sent_at: datetime | None = None  # the order of waiting items


@dataclass
class QueueView:
    listening: int
    silent_after_s: float
    workers: list[dict[str, Any]]
    running: list[Item]
    queued: list[Item]

    def public(self) -> dict[str, Any]:
        def item(i: Item) -> dict[str, Any]:
            return {k: v for k, v in asdict(i).items() if not k.startswith("_")}

        return {
            "listening": self.listening,
            "silent_after_s": self.silent_after_s,
            "workers": self.workers,
            "running": [item(i) for i in self.running],
            "queued": [item(i) for i in self.queued],
        }


def _slots(w: WorkerPresence) -> int:
    """How many jobs a worker runs at once (its Celery concurrency), as it said."""
    slots = (w.job or {}).get("slots")
    return slots if isinstance(slots, int) and slots > 0 else 1


def _job_of(w: WorkerPresence) -> tuple[str, int] | None:
    job = w.job or {}
    if isinstance(job.get("kind"), str) and isinstance(job.get("id"), int):
        return job["kind"], job["id"]
    return None


def _run_gpus(run: TrainingRun, workers: list[WorkerPresence]) -> list[str]:
    """The GPUs a running run holds, from its worker's leases ("run 5 (host)")."""
    for w in workers:
        if w.hostname == run.worker_hostname:
            return [g for g, holder in (w.leases or {}).items() if f"run {run.id} " in f"{holder} "]
    return []


def _counts(db: Session, dataset_id: int) -> tuple[int, int, int]:
    """(training images, test images, classes) of a dataset."""
    rows = dict(
        db.execute(
            select(Image.split, func.count())
            .where(Image.dataset_id == dataset_id)
            .group_by(Image.split)
        ).all()
    )
    classes = db.scalar(
        select(func.count()).select_from(DatasetClass).where(DatasetClass.dataset_id == dataset_id)
    )
    return int(rows.get("train", 0)), int(rows.get("test", 0)), int(classes or 0)


class _Memo:
    """What estimating several queued runs reads once per build: paces and dataset sizes."""

    def __init__(self, db: Session) -> None:
        self.db = db
        self.rates: dict[tuple[str, str, int], float | None] = {}
        self.sizes: dict[int, tuple[int, int, int]] = {}

    def rate(self, method: str, model: str, dataset_id: int) -> float | None:
        key = (method, model, dataset_id)
        if key not in self.rates:
            self.rates[key] = measured_rate(self.db, method, model, dataset_id)
        return self.rates[key]

    def counts(self, dataset_id: int) -> tuple[int, int, int]:
        if dataset_id not in self.sizes:
            self.sizes[dataset_id] = _counts(self.db, dataset_id)
        return self.sizes[dataset_id]


def run_duration_s(
    db: Session, run: TrainingRun, on_gpu: bool, memo: _Memo | None = None
) -> float | None:
    """How long a run that has not started should take: its training images times its
    epochs at the images per second recent runs of its method and model measured, and its
    final evaluation's work (runconfig.cost) at the same pace, times how much longer the last
    evaluation of a run like it took than that; None when no such run has measured its pace."""
    memo = memo or _Memo(db)
    try:
        cfg = runconfig.from_stored(run.config or {})
    except runconfig.ConfigError:
        return None
    rate = memo.rate(run.method, cfg.model, run.dataset_id)
    if rate is None:
        return None
    n_train, n_test, n_classes = memo.counts(run.dataset_id)
    default_n = AUTOATTACK_N_GPU if on_gpu else AUTOATTACK_N_CPU
    training, evaluation = cost.run_units(
        cfg,
        n_train=n_train,
        n_test=n_test,
        n_classes=max(2, n_classes),
        autoattack_n=default_n if cfg.autoattack_n is None else cfg.autoattack_n,
    )
    factor = lifecycle.evaluation_factor(db, run) or 1.0
    return (training + evaluation * factor) / (rate * cost.train_passes(run.method, cfg.steps))


def evaluation_duration_s(db: Session) -> float | None:
    """The median length of the latest finished inequality evaluations (from their
    queueing to their end: an upper bound), None when none has finished."""
    rows = db.execute(
        select(InequalityEvaluation.created_at, InequalityEvaluation.finished_at)
        .where(InequalityEvaluation.state == "succeeded")
        .order_by(InequalityEvaluation.id.desc())
        .limit(RECENT_EVALUATIONS)
    ).all()
    spans = [
        (aware(done) - aware(made)).total_seconds()  # type: ignore[operator]
        for made, done in rows
        if made is not None and done is not None
    ]
    return statistics.median(spans) if spans else None


def _queued_runs(db: Session, on_gpu: bool) -> list[Item]:
    runs = db.scalars(select(TrainingRun).where(TrainingRun.state == "queued")).all()
    memo = _Memo(db)
    items = []
    for r in runs:
        held = r.celery_task_id is None
        last = (r.log_tail or "").splitlines()[-1:]
        said = last[0].split(" ", 2)[-1] if last else ""
        waiting = said if said.startswith(("Waiting for", "It asks for")) else ""
        items.append(
            Item(
                kind="run",
                id=r.id,
                name=r.name or f"run {r.id}",
                state="queued",
                link=f"#/runs/{r.id}",
                duration_s=run_duration_s(db, r, on_gpu, memo),
                note="held back by its sweep until earlier runs of it end" if held else waiting,
                # a held sweep run is sent after everything sent already
                _sent_at=None if held else aware(r.heartbeat_at) or aware(r.created_at),
            )
        )
    return items


def build(db: Session, settings: Settings, now: datetime | None = None) -> QueueView:
    """The whole queue as it stands (see the module's docstring)."""
    now = now or utcnow()
    workers = [
        w for w in presence.listening(db, settings, now) if settings.training_queue in w.queues
    ]
    jobs = {j: w.hostname for w in workers if (j := _job_of(w)) is not None}
    on_gpu = any(w.gpus for w in workers)

    running: list[Item] = []
    for r in db.scalars(select(TrainingRun).where(TrainingRun.state == "running")).all():
        running.append(
            Item(
                kind="run",
                id=r.id,
                name=r.name or f"run {r.id}",
                state="running",
                link=f"#/runs/{r.id}",
                worker=r.worker_hostname,
                gpus=_run_gpus(r, workers),
                progress=r.progress,
                time_left_s=live.time_left_s(r, live.pace_points(db, r), now),
            )
        )
    queued = _queued_runs(db, on_gpu)
    eval_length = evaluation_duration_s(db)
    for e in db.scalars(
        select(InequalityEvaluation).where(InequalityEvaluation.state.in_(("queued", "running")))
    ).all():
        item = Item(
            kind="evaluation",
            id=e.id,
            name=f"inequality evaluation {e.id} (runs {', '.join(map(str, e.run_ids))})",
            state=e.state,
            link=f"#/compare?ids={','.join(map(str, e.run_ids))}",
            worker=jobs.get(("evaluation", e.id)),
            progress=e.progress,
        )
        if e.state == "running":
            running.append(item)
        else:
            item.duration_s, item._sent_at = eval_length, aware(e.created_at)
            queued.append(item)
    for s in db.scalars(select(Study).where(Study.state == "generating")).all():
        host = jobs.get(("study", s.id))
        item = Item(
            kind="study",
            id=s.id,
            name=f"stimuli of study “{s.name}”",
            state="running" if host or s.progress > 0 else "queued",
            link=f"#/studies/{s.id}",
            worker=host,
            progress=s.progress,
        )
        if item.state == "running":
            running.append(item)
        else:
            item._sent_at = aware(s.created_at)
            queued.append(item)

    far = datetime.max.replace(tzinfo=now.tzinfo)
    queued.sort(key=lambda i: (i._sent_at or far, i.kind, i.id))
    _play_out(running, queued, {w.hostname: _slots(w) for w in workers})
    return QueueView(
        listening=len(workers),
        silent_after_s=presence.silent_after_s(settings),
        workers=[_worker_public(w, running, now) for w in workers],
        running=running,
        queued=queued,
    )


@dataclass
class _Slot:
    """One job's place on a worker while the queue is played out."""

    worker: str
    free_in_s: float = 0.0
    unsure: bool = False  # an item before it has no estimate: later starts are lower bounds


def _play_out(running: list[Item], queued: list[Item], hosts: list[str] | dict[str, int]) -> None:
    """Number the waiting items and estimate when each starts: every slot of a worker (a
    worker runs `hosts[name]` jobs at once, one unless it says more) takes the next one when
    it is free (its running item's time left; unknown: free now, and the starts after it
    lower bounds)."""
    for n, item in enumerate(queued, 1):
        item.position = n
    slots = hosts if isinstance(hosts, dict) else dict.fromkeys(hosts, 1)
    free = [_Slot(h) for h, n in sorted(slots.items()) for _ in range(max(1, n))]
    if not free:
        return

    def first(among: list[_Slot]) -> _Slot:
        return min(among, key=lambda s: (s.free_in_s, s.worker))

    for item in running:  # on its worker's least busy slot (else the least busy of all)
        slot = first([s for s in free if s.worker == item.worker] or free)
        slot.free_in_s += item.time_left_s or 0.0
        slot.unsure = slot.unsure or item.time_left_s is None
    for item in queued:
        slot = first(free)
        item.worker, item.start_in_s, item.start_is_lower_bound = (
            slot.worker,
            slot.free_in_s,
            slot.unsure,
        )
        slot.free_in_s += item.duration_s or 0.0
        slot.unsure = slot.unsure or item.duration_s is None


def _worker_public(w: WorkerPresence, running: list[Item], now: datetime) -> dict[str, Any]:
    doing = [i for i in running if i.worker == w.hostname]
    seen = aware(w.seen_at)
    return dict(
        hostname=w.hostname,
        queues=w.queues,
        gpus=w.gpus,
        leases=w.leases,
        job=w.job,
        doing=[dict(kind=i.kind, id=i.id, name=i.name, link=i.link) for i in doing],
        started_at=aware(w.started_at),
        seen_at=seen,
        seen_s_ago=None if seen is None else max(0, math.floor((now - seen).total_seconds())),
    )


def place_of(view: QueueView, kind: str, item_id: int) -> dict[str, Any] | None:
    """Where a waiting item stands (a run's or a study's page shows it): its position of how
    many, the estimated start, whether any worker listens; None when it is not waiting."""
    for item in view.queued:
        if item.kind == kind and item.id == item_id:
            return {
                "position": item.position,
                "of": len(view.queued),
                "ahead_running": len(view.running),
                "start_in_s": item.start_in_s,
                "start_is_lower_bound": item.start_is_lower_bound,
                "duration_s": item.duration_s,
                "worker": item.worker,
                "listening": view.listening,
                "note": item.note,
            }
    return None


def run_place(db: Session, settings: Settings, run: TrainingRun) -> dict[str, Any] | None:
    """A queued run's place (place_of); None for a run that is not waiting."""
    if run.state != "queued":
        return None
    return place_of(build(db, settings), "run", run.id)


def study_place(db: Session, settings: Settings, study: Study) -> dict[str, Any] | None:
    """A study's stimulus job's place while it waits for a worker; None otherwise."""
    if study.state != "generating":
        return None
    return place_of(build(db, settings), "study", study.id)
