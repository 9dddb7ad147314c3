"""What the runs table and a run's page read while runs train: the filtered, sorted list;
the per-batch points (thinned for the page), the time left from the measured pace, the
worker's system figures; and the live stream's events since a cursor."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from backend.models import FINISHED_STATES, Dataset, RunBatch, RunEpoch, TrainingRun, utcnow
from backend.services.run_lifecycle import aware

SORTABLE = {
    "created_at": TrainingRun.created_at,
    "name": TrainingRun.name,
    "method": TrainingRun.method,
    "state": TrainingRun.state,
    "id": TrainingRun.id,
    "progress": TrainingRun.progress,
    "finished_at": TrainingRun.finished_at,
}


def list_runs(
    db: Session,
    *,
    dataset_id: int | None = None,
    method: str | None = None,
    state: str | None = None,
    tag: str | None = None,
    group_key: str | None = None,
    sort: str = "-created_at",
    limit: int | None = 200,
    offset: int = 0,
) -> tuple[list[TrainingRun], int]:
    """One page of runs (`limit` None: every run) and how many match in all."""
    q = select(TrainingRun)
    if dataset_id is not None:
        q = q.where(TrainingRun.dataset_id == dataset_id)
    if method:
        q = q.where(TrainingRun.method == method)
    if state:
        q = q.where(TrainingRun.state == state)
    if group_key:
        q = q.where(TrainingRun.group_key == group_key)
    desc = sort.startswith("-")
    column = SORTABLE.get(sort.lstrip("-"), TrainingRun.created_at)
    q = q.order_by(column.desc() if desc else column.asc(), TrainingRun.id.desc())
    if tag:
        # tags are a JSON list, filtered here (JSON containment differs between PostgreSQL
        # and SQLite); only a tag filter reads every matching run
        runs = [r for r in db.scalars(q).all() if tag in (r.tags or [])]
        return runs[offset : None if limit is None else offset + limit], len(runs)
    total = db.scalar(select(func.count()).select_from(q.order_by(None).subquery())) or 0
    return list(db.scalars(q.limit(limit).offset(offset)).all()), total


def dataset_names(db: Session, runs: Iterable[TrainingRun]) -> dict[int, str]:
    ids = {r.dataset_id for r in runs}
    if not ids:
        return {}
    return dict(db.execute(select(Dataset.id, Dataset.name).where(Dataset.id.in_(ids))).all())


# The live curves a run's page loads at once; a longer run's points are thinned evenly.
BATCH_POINTS_MAX = 4000


def batch_rows(db: Session, run_id: int, after_step: int = 0) -> list[RunBatch]:
    """The run's per-batch points after `after_step`, in step order."""
    q = select(RunBatch).where(RunBatch.run_id == run_id, RunBatch.step > after_step)
    return list(db.scalars(q.order_by(RunBatch.step)).all())


def thinned(rows: Sequence[RunBatch], keep: int = BATCH_POINTS_MAX) -> list[RunBatch]:
    """At most `keep` of the points, evenly spaced, the last one always among them."""
    if len(rows) <= keep:
        return list(rows)
    stride = math.ceil(len(rows) / keep)
    picked = list(rows[::stride])
    if picked[-1] is not rows[-1]:
        picked.append(rows[-1])
    return picked


def batch_point(row: RunBatch) -> dict[str, Any]:
    return {
        "step": row.step,
        "epoch": row.epoch,
        "loss": row.loss,
        "accuracy": row.accuracy,
        "images_per_s": row.images_per_s,
        "created_at": (aware(row.created_at) or utcnow()).isoformat(),
    }


def batches_per_epoch(run: TrainingRun) -> int | None:
    n = (run.reproducibility or {}).get("batches_per_epoch")
    return n if isinstance(n, int) and n > 0 else None


def pace_points(db: Session, run: TrainingRun) -> list[RunBatch]:
    """The first per-batch point stored since the run (re)started and the last one: what
    time_left_s measures the batch rate between."""
    if run.state != "running" or run.started_at is None:
        return []
    since = select(RunBatch).where(RunBatch.run_id == run.id, RunBatch.created_at >= run.started_at)
    first = db.scalars(since.order_by(RunBatch.created_at, RunBatch.step).limit(1)).first()
    last = db.scalars(since.order_by(RunBatch.step.desc()).limit(1)).first()
    return [p for p in (first, last) if p is not None]


def system_figures(run: TrainingRun) -> dict[str, Any] | None:
    """The latest device, peak memory (bytes) and images per second the worker reported."""
    figures = (run.reproducibility or {}).get("system")
    return figures if isinstance(figures, dict) and figures else None


def _when(text: Any) -> datetime | None:
    try:
        return aware(datetime.fromisoformat(text)) if isinstance(text, str) else None
    except ValueError:
        return None


def evaluation_estimate_s(
    work: dict[str, Any] | None, units_per_s: float | None = None
) -> float | None:
    """Seconds the final evaluation should take, before it has measured anything: its units
    (runconfig.cost, from the configuration and the data) at the pace training measured, on
    one process (training may have run on several), times how much longer than that the last
    evaluation of a run like it took (a small model's AutoAttack costs more than its passes).
    `units_per_s`: training's pace over its whole span (training_units_per_s), else the last
    point's."""
    work = work or {}
    units, rate = work.get("evaluation_units"), units_per_s or work.get("units_per_s")
    if not isinstance(units, (int, float)) or not isinstance(rate, (int, float)) or rate <= 0:
        return None
    return float(units) * float(work.get("processes") or 1) / float(rate) * _factor(work)


def _factor(work: dict[str, Any]) -> float:
    """How much longer than its units at training's pace the last evaluation of a run like
    this one took (run_lifecycle.claim), 1 when none measured it."""
    factor = work.get("evaluation_factor_prior")
    return float(factor) if isinstance(factor, (int, float)) and factor > 0 else 1.0


def evaluation_left_s(work: dict[str, Any], now: datetime) -> float | None:
    """Seconds left of a running final evaluation: its units left at the pace it has measured
    since it began (at training's pace before it has done anything); None once that time has
    passed without the evaluation ending (longer than estimated)."""
    ev = work.get("evaluation") or {}
    began, at = _when(work.get("evaluation_started_at")), _when(ev.get("at"))
    done, total = ev.get("units_done") or 0.0, ev.get("units_total") or 0.0
    if began is None or at is None:
        return None
    span = (at - began).total_seconds()
    if done > 0 and span > 0:
        rate = done / span
    else:
        rate = float(work.get("units_per_s") or 0) / float(work.get("processes") or 1)
        rate /= _factor(work)
    if rate <= 0:
        return None
    left = max(0.0, total - done) / rate - (now - at).total_seconds()
    return left if left > 0 else None


def time_left_s(
    run: TrainingRun, points: Sequence[RunBatch] = (), now: datetime | None = None
) -> float | None:
    """Seconds until the run ends, its final evaluation included: while it trains, training's
    time left from the measured batch rate (the per-batch points stored since the run
    (re)started, which also counts the per-epoch checks once an epoch has passed; else the
    pace of the epochs finished since then) plus the evaluation's estimate; while it
    evaluates, the evaluation's time left at its measured pace."""
    if run.state != "running" or run.started_at is None:
        return None
    now = now or utcnow()
    work = run.work or {}
    if work.get("phase") == "evaluating":
        return evaluation_left_s(work, now)
    training = training_left_s(run, points, now)
    if training is None:
        return None
    return training + (evaluation_estimate_s(work, training_units_per_s(run, points)) or 0.0)


def _batch_rate(run: TrainingRun, points: Sequence[RunBatch]) -> tuple[float, RunBatch] | None:
    """Batches per second over the per-batch points stored since the run (re)started, with
    the last of them; None before two points span some time."""
    started = aware(run.started_at)
    if started is None:
        return None
    since = [p for p in points if (aware(p.created_at) or started) >= started]
    if len(since) < 2:
        return None
    first, last = since[0], since[-1]
    span = (
        (aware(last.created_at) or started) - (aware(first.created_at) or started)
    ).total_seconds()
    if span <= 0 or last.step <= first.step:
        return None
    return (last.step - first.step) / span, last


def training_units_per_s(run: TrainingRun, points: Sequence[RunBatch]) -> float | None:
    """Training's pace in work units per second, over the same span as its batch rate (less
    jumpy than one point's figure): the batch rate times the units of a batch."""
    work, per_epoch_batches = run.work or {}, batches_per_epoch(run)
    units = work.get("train_units")
    measured = _batch_rate(run, points)
    if measured is None or not per_epoch_batches or not isinstance(units, (int, float)):
        return None
    return measured[0] * float(units) / (per_epoch_batches * max(1, run.total_epochs))


def training_left_s(run: TrainingRun, points: Sequence[RunBatch], now: datetime) -> float | None:
    """Seconds of training left (time_left_s)."""
    if run.started_at is None or run.total_epochs <= 0:
        return None
    started = aware(run.started_at)
    assert started is not None
    per_epoch_batches = batches_per_epoch(run)
    measured = _batch_rate(run, points)
    if per_epoch_batches and measured is not None:
        rate, last = measured  # batches per second
        last_at = aware(last.created_at) or now
        steps_left = max(0, per_epoch_batches * run.total_epochs - last.step)
        return max(0.0, steps_left / rate - (now - last_at).total_seconds())
    recent = [e for e in run.epochs if aware(e.created_at) >= started]  # type: ignore[operator]
    if not recent:
        return None
    per_epoch = ((aware(recent[-1].created_at) or now) - started).total_seconds() / len(recent)
    remaining = max(0, run.total_epochs - run.current_epoch)
    since_last = (now - (aware(recent[-1].created_at) or now)).total_seconds()
    return max(0.0, per_epoch * remaining - since_last) if remaining else 0.0


# ------------------------------------------------------------------ the live stream


@dataclass
class LiveCursor:
    """What a run's event stream has sent so far."""

    after_step: int = 0
    after_epoch: int = 0
    run: dict[str, Any] = field(default_factory=dict)
    log_tail: str | None = None
    # a queued run's place in the queue, worked out again every PLACE_EVERY_S
    place: dict[str, Any] | None = None
    place_at: float = -math.inf


# (session, run) -> a queued run's place in the queue (backend/services/work_queue.py)
Place = Callable[[Session, TrainingRun], dict[str, Any] | None]
PLACE_EVERY_S = 3.0


def run_summary(
    run: TrainingRun, points: Sequence[RunBatch], queue: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The fields of a run that change while it trains (the stream's "run" event); `queue`:
    its place while it waits."""
    left = time_left_s(run, points)
    return {
        "id": run.id,
        "state": run.state,
        "progress": run.progress,
        "current_epoch": run.current_epoch,
        "total_epochs": run.total_epochs,
        "time_left_s": None if left is None else round(left),
        "cancel_requested": run.cancel_requested,
        "error": run.error,
        "attempts": run.attempts,
        "batches_per_epoch": batches_per_epoch(run),
        "system": system_figures(run),
        "work": run.work,
        "queue": queue,
    }


def live_events(
    sessions: sessionmaker[Session], run_id: int, cursor: LiveCursor, place: Place | None = None
) -> tuple[list[tuple[str, Any]], bool]:
    """What happened to a run since `cursor` (which moves on), read in one short session:
    events [(name, data)] ("run" when its state, progress, time left or place in the queue
    changed, "log", "epoch" and "batch" with the new rows, "end" once it has finished) and
    whether it has."""
    events: list[tuple[str, Any]] = []
    with sessions() as db:
        run = db.get(TrainingRun, run_id)
        if run is None:
            return [("end", {"state": "deleted"})], True
        epochs = db.scalars(
            select(RunEpoch)
            .where(RunEpoch.run_id == run_id, RunEpoch.epoch > cursor.after_epoch)
            .order_by(RunEpoch.epoch)
        ).all()
        new_points = batch_rows(db, run_id, cursor.after_step)
        if run.state != "queued" or place is None:
            cursor.place = None
        elif time.monotonic() - cursor.place_at >= PLACE_EVERY_S:
            cursor.place, cursor.place_at = place(db, run), time.monotonic()
        summary = run_summary(run, pace_points(db, run), cursor.place)
        if summary != cursor.run:
            events.append(("run", summary))
            cursor.run = summary
        if run.log_tail != cursor.log_tail:
            events.append(("log", {"log_tail": run.log_tail}))
            cursor.log_tail = run.log_tail
        if epochs:
            events.append(
                (
                    "epoch",
                    [
                        {
                            "epoch": e.epoch,
                            "metrics": e.metrics,
                            "created_at": (aware(e.created_at) or utcnow()).isoformat(),
                        }
                        for e in epochs
                    ],
                )
            )
            cursor.after_epoch = epochs[-1].epoch
        if new_points:
            events.append(("batch", [batch_point(p) for p in thinned(new_points)]))
            cursor.after_step = new_points[-1].step
        finished = run.state in FINISHED_STATES
        db.rollback()  # nothing was written: end the read transaction before the next poll
    if finished:
        events.append(("end", {"state": summary["state"]}))
    return events, finished
