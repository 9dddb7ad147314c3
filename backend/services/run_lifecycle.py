"""The life of a training run, as one state machine (backend/models.py: RUN_TRANSITIONS).

    queued --claim--> running --finish--> succeeded | failed | cancelled
      |                  |  \\--orphaned (its worker went quiet)--> queued again, or failed
      |                  \\--cancel: cancel_requested, the task stops within one batch
      \\--cancel--> cancelled           failed | cancelled --retry--> queued

Every change of a run's state goes through this module: the API's cancel and retry, the
dispatch of a run to the queue, and the worker's claim, heartbeat, per-epoch report and
finish (worker/training_tasks.py adapts these to the training library's callbacks), and the
recovery (requeue_orphans: orphaned runs and lost messages), which every worker runs on a
timer of its own (worker/recovery.py), never a request. A move the table does not allow
raises Conflict, so a late or duplicated message can never, say, mark a re-queued run
succeeded.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.core.errors import Conflict, Unavailable
from backend.core.queue import TRAIN_TASK, enqueue, held_tokens
from backend.models import (
    FINISHED_STATES,
    RUN_TRANSITIONS,
    RunBatch,
    RunEpoch,
    Sweep,
    TrainingRun,
    utcnow,
)

_logger = logging.getLogger(__name__)

Enqueue = Callable[..., str]
# (tokens, settings) -> the tokens whose message the broker holds; None: cannot tell
Holds = Callable[[list[str], Settings], set[str] | None]

# A run whose worker stops responding this many times is given up (failed).
MAX_ATTEMPTS = 3
LOG_LINES = 60


def aware(t: datetime | None) -> datetime | None:
    """A timestamp as UTC-aware (SQLite hands naive ones back)."""
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


def append_log(run: TrainingRun, line: str, keep: int = LOG_LINES) -> None:
    """Add a stamped line to the run's log tail (the run page shows the last `keep`)."""
    stamp = utcnow().strftime("%Y-%m-%d %H:%M:%S")
    lines = (run.log_tail or "").splitlines() + [f"{stamp} {line}"]
    run.log_tail = "\n".join(lines[-keep:])


def can_move(state: str, to: str) -> bool:
    return to in RUN_TRANSITIONS.get(state, ())


def move(run: TrainingRun, to: str) -> None:
    """Set the run's state to `to`, or raise Conflict when the table does not allow it."""
    if not can_move(run.state, to):
        raise Conflict(f"A {run.state} run cannot become {to}.")
    run.state = to


# ---------------------------------------------------------------------------- the API's side


QUEUE_DOWN = (
    "The task queue could not be reached, so the run was kept as failed; "
    "retry it when the queue is back."
)


def dispatch(db: Session, run: TrainingRun, enqueue_fn: Enqueue = enqueue) -> bool:
    """Queue a run with a fresh dispatch token; False when the broker could not be reached
    (the run is then failed, with the reason). The token is committed before the message is
    sent, and a task whose token is no longer the run's does nothing, so a late redelivery of
    an old message can never train the run twice."""
    if run.state != "queued":
        move(run, "queued")
    run.celery_task_id = uuid.uuid4().hex
    run.cancel_requested = False
    run.error = None
    run.heartbeat_at = utcnow()  # for a queued run: when its message was sent
    db.commit()
    try:
        enqueue_fn(TRAIN_TASK, run.id, run.celery_task_id)
    except Exception as exc:  # noqa: BLE001 - any broker failure: one line, the run says why
        _logger.warning("could not enqueue run %s: %s: %s", run.id, type(exc).__name__, exc)
        move(run, "failed")
        run.error = f"The task queue could not be reached ({type(exc).__name__}); retry the run."
        run.finished_at = utcnow()
        db.commit()
        return False
    return True


def cancel_run(db: Session, run: TrainingRun) -> TrainingRun:
    """A queued run is cancelled at once (its task will find it so and do nothing); a running
    one is asked to stop, which its task notices within one batch."""
    if run.state == "queued":
        move(run, "cancelled")
        run.finished_at = utcnow()
        run.cancel_requested = True
    elif run.state == "running":
        run.cancel_requested = True
    else:
        raise Conflict("Only a queued or running run can be cancelled.")
    db.commit()
    if run.sweep_id is not None and run.state == "cancelled":
        release_held(db, run.sweep_id)
    return run


def retry_run(db: Session, run: TrainingRun, enqueue_fn: Enqueue = enqueue) -> TrainingRun:
    """Queue a failed or cancelled run again; it resumes from its last checkpoint."""
    if run.state not in ("failed", "cancelled"):
        raise Conflict("Only a failed or cancelled run can be retried.")
    run.finished_at = None
    run.attempts = 0
    run.resent_at, run.resent_why = None, None  # a new life: no recovery of it yet
    if not dispatch(db, run, enqueue_fn):
        raise Unavailable(QUEUE_DOWN)
    return run


def resend(db: Session, run: TrainingRun, why: str, enqueue_fn: Enqueue = enqueue) -> None:
    """Dispatch a run again on the recovery's behalf, keeping when and why on the run (its
    page shows them) and in its log."""
    append_log(run, why)
    run.resent_at, run.resent_why = utcnow(), why
    dispatch(db, run, enqueue_fn)


def _locked(db: Session, state: str, pick: Callable[[TrainingRun], bool]) -> list[TrainingRun]:
    """The runs in `state` that `pick` chooses, locked (skipping rows another pass holds),
    read again under the lock and chosen again. The read that finds them takes no lock, so a
    pass with nothing to do writes nothing (on SQLite: never takes the write lock)."""
    seen = db.scalars(select(TrainingRun).where(TrainingRun.state == state)).all()
    ids = [run.id for run in seen if pick(run)]
    if not ids:
        return []
    locked = db.scalars(
        select(TrainingRun)
        .where(TrainingRun.id.in_(ids), TrainingRun.state == state)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    ).all()
    return [run for run in locked if pick(run)]


def requeue_orphans(
    db: Session,
    settings: Settings,
    *,
    hostname: str | None = None,
    enqueue_fn: Enqueue = enqueue,
    holds: Holds = held_tokens,
    now: datetime | None = None,
) -> list[int]:
    """Runs marked running whose worker has gone quiet (no heartbeat for
    settings.run_heartbeat_timeout_s), or that a just-started worker `hostname` owned before it
    restarted, are queued again (they resume from their checkpoint) or, after MAX_ATTEMPTS,
    marked failed; then queued runs whose message was lost are dispatched again
    (requeue_lost_messages). Returns the ids handled."""
    now = now or utcnow()
    limit = now - timedelta(seconds=settings.run_heartbeat_timeout_s)

    def orphaned(run: TrainingRun) -> bool:
        beat = aware(run.heartbeat_at) or aware(run.started_at) or aware(run.created_at)
        restarted_here = hostname is not None and run.worker_hostname == hostname
        return restarted_here or beat is None or beat < limit

    handled = []
    for run in _locked(db, "running", orphaned):
        handled.append(run.id)
        if run.cancel_requested:
            move(run, "cancelled")
            run.finished_at = now
            append_log(run, "The worker stopped while the run was being cancelled.")
        elif run.attempts >= MAX_ATTEMPTS:
            move(run, "failed")
            run.finished_at = now
            run.error = f"The worker stopped responding {run.attempts} times; the run was given up."
        else:
            why = f"Worker {run.worker_hostname or '?'} went silent; the run was queued again."
            resend(db, run, why, enqueue_fn)
    db.commit()
    handled += requeue_lost_messages(
        db, settings, enqueue_fn=enqueue_fn, holds=holds, now=now, skip=set(handled)
    )
    handled += release_all_held(db, enqueue_fn)
    if handled:
        _logger.warning("orphaned runs handled: %s", handled)
    return handled


def requeue_lost_messages(
    db: Session,
    settings: Settings,
    *,
    enqueue_fn: Enqueue = enqueue,
    holds: Holds = held_tokens,
    now: datetime | None = None,
    skip: set[int] | None = None,
) -> list[int]:
    """Queued runs whose task message the broker no longer holds (it restarted empty, or the
    message was purged) are dispatched again with a fresh token. A run dispatched less than
    settings.run_lost_message_grace_s ago is left alone (its message may be in flight), and
    nothing is done when the broker cannot be read. Returns the ids dispatched again."""
    now = now or utcnow()
    limit = now - timedelta(seconds=settings.run_lost_message_grace_s)
    queued = db.scalars(select(TrainingRun).where(TrainingRun.state == "queued")).all()
    waiting = {
        run.id: run.celery_task_id
        for run in queued
        if run.id not in (skip or set())
        and run.celery_task_id is not None
        and (aware(run.heartbeat_at) or aware(run.created_at) or now) <= limit
    }
    # the broker is read before any row is locked; a broker that cannot be read (None) judges
    # no run lost
    held = holds([t or "" for t in waiting.values()], settings) if waiting else set()
    gone = {} if held is None else {i: t for i, t in waiting.items() if t not in held}
    # still queued under the same token once locked: nobody claimed or re-sent it meanwhile
    lost = _locked(db, "queued", lambda run: gone.get(run.id, "") == run.celery_task_id)
    for run in lost:
        why = "Its queue message was lost (the broker restarted?); queued again."
        resend(db, run, why, enqueue_fn)
    db.commit()
    return [run.id for run in lost]


# ---------------------------------------------------------------------------- the worker's side


def claim(
    db: Session,
    run_id: int,
    token: str | None,
    hostname: str,
    heartbeat_timeout_s: float,
) -> str | None:
    """Mark the run running for this delivery; returns why not, or None when claimed. A run
    still beating on another worker is left to it; one that went quiet is taken over."""
    run = db.execute(
        select(TrainingRun).where(TrainingRun.id == run_id).with_for_update()
    ).scalar_one_or_none()
    if run is None:
        return "no such run"
    if run.state in FINISHED_STATES:
        return f"run already {run.state}"
    if token is not None and run.celery_task_id not in (None, token):
        return "superseded by a newer dispatch"
    if run.state == "running" and run.worker_hostname != hostname:
        beat = aware(run.heartbeat_at)
        if beat is not None and (utcnow() - beat).total_seconds() < heartbeat_timeout_s:
            return f"running on {run.worker_hostname}"
    if run.cancel_requested:
        move(run, "cancelled")
        run.finished_at = utcnow()
        db.commit()
        return "cancelled before it started"
    if run.state != "running":  # a quiet worker's run is taken over as it stands
        move(run, "running")
    # a new delivery trains (or resumes) first; its evaluation begins afresh, expected to take
    # as much longer than its units at training's pace as the last one on this data did
    work = {k: v for k, v in (run.work or {}).items() if k not in EVALUATION_WORK}
    run.work = {**work, "phase": "training", "evaluation_factor_prior": evaluation_factor(db, run)}
    resumed = run.current_epoch
    run.started_at = utcnow()
    run.heartbeat_at = utcnow()
    run.worker_hostname = hostname
    run.attempts += 1
    run.error = None
    append_log(
        run,
        f"Started on {hostname} (attempt {run.attempts})"
        + (f", resuming after epoch {resumed}." if resumed else "."),
    )
    db.commit()
    return None


def note_waiting(db: Session, run_id: int, why: str) -> None:
    """A queued run whose worker put it back for later (too few free GPUs): why, in its log
    (once while the reason stays the same), and the time its message was sent again (the
    task is sent again, delayed, so the run is not judged lost)."""
    run = db.get(TrainingRun, run_id)
    if run is None or run.state != "queued":
        return
    last = (run.log_tail or "").splitlines()[-1:]
    if not last or not last[0].endswith(why):
        append_log(run, why)
    run.heartbeat_at = utcnow()
    db.commit()


# how far back a run looks for a finished run like it whose evaluation measured its pace, and
# the bounds of the factor it takes from it
FACTOR_RUNS = 20
FACTOR_BOUNDS = (0.2, 50.0)


def evaluation_factor(db: Session, run: TrainingRun) -> float | None:
    """How much longer than its units at training's pace the final evaluation of the latest
    finished run of the same dataset and model took (None when none measured it): on a small
    model AutoAttack's many small steps cost more than their passes."""
    model = (run.config or {}).get("model")
    recent = db.scalars(
        select(TrainingRun)
        .where(
            TrainingRun.dataset_id == run.dataset_id,
            TrainingRun.state == "succeeded",
            TrainingRun.id != run.id,
        )
        .order_by(TrainingRun.finished_at.desc())
        .limit(FACTOR_RUNS)
    ).all()
    for other in recent:
        factor = (other.work or {}).get("evaluation_factor")
        if (other.config or {}).get("model") == model and isinstance(factor, (int, float)):
            return min(FACTOR_BOUNDS[1], max(FACTOR_BOUNDS[0], float(factor)))
    return None


def heartbeat(db: Session, run_id: int, log_tail: str) -> bool:
    """Stamp the run as alive, with its log tail; False once it is no longer running."""
    run = db.get(TrainingRun, run_id)
    if run is None or run.state != "running":
        return False
    run.heartbeat_at = utcnow()
    run.log_tail = log_tail or run.log_tail
    db.commit()
    return True


def cancel_requested(db: Session, run_id: int) -> bool:
    """Whether the run should stop: cancelled from the dashboard, or deleted."""
    flag = db.execute(select(TrainingRun.cancel_requested).where(TrainingRun.id == run_id)).scalar()
    return bool(flag) or flag is None


def report_epoch(
    db: Session, run_id: int, epoch: int, total: int, metrics: dict[str, Any], log_tail: str
) -> None:
    """Store one epoch's metrics (again, on a resumed run) and the run's progress."""
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(RunEpoch).values(run_id=run_id, epoch=epoch, metrics=metrics, created_at=utcnow())
    db.execute(
        stmt.on_conflict_do_update(
            index_elements=["run_id", "epoch"], set_={"metrics": metrics, "created_at": utcnow()}
        )
    )
    run = db.get(TrainingRun, run_id)
    if run is not None:
        run.current_epoch = epoch
        run.total_epochs = total
        run.progress = epoch / max(1, total)
        run.heartbeat_at = utcnow()
        run.log_tail = log_tail
    db.commit()


def report_missing_epochs(db: Session, run_id: int, history: list[dict[str, Any]]) -> int:
    """Store the finished epochs of a run's history (its metrics.json) that were never
    reported: an epoch whose checkpoint was written just before its worker died, and that the
    resumed run therefore starts after. Returns how many were missing."""
    have = set(db.scalars(select(RunEpoch.epoch).where(RunEpoch.run_id == run_id)))
    missing = [m for m in history if int(m.get("epoch", 0)) not in have and m.get("epoch")]
    for metrics in missing:
        db.add(RunEpoch(run_id=run_id, epoch=int(metrics["epoch"]), metrics=metrics))
    db.commit()
    return len(missing)


# A running run's progress stays under this until its task has finished it (the results
# published after the evaluation): the bar is full only when the run has ended.
PROGRESS_RUNNING_MAX = 0.999
# what report_evaluation keeps in a run's work (dropped when a new delivery claims it)
EVALUATION_WORK = ("evaluation", "evaluation_started_at", "evaluation_base")
# the figures of a progress point's "work" (worker/sipat/train.py) a run keeps
WORK_FIELDS = (
    "train_units",
    "train_units_done",
    "evaluation_units",
    "processes",
    "units_per_s",
)


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def report_batch(db: Session, run_id: int, point: dict[str, Any]) -> None:
    """Store one point of the live curves (again, on a resumed run: the same step is
    overwritten), move the run's progress to it, and keep the latest system figures (device,
    peak memory, images per second) in its reproducibility record under "system"."""
    step, epoch = int(point["step"]), int(point["epoch"])
    values = {
        "epoch": epoch,
        "loss": float(point["loss"]),
        "accuracy": float(point["accuracy"]),
        "images_per_s": _number(point.get("images_per_s")),
        "created_at": utcnow(),
    }
    insert = pg_insert if db.get_bind().dialect.name == "postgresql" else sqlite_insert
    stmt = insert(RunBatch).values(run_id=run_id, step=step, **values)
    db.execute(stmt.on_conflict_do_update(index_elements=["run_id", "step"], set_=values))
    run = db.get(TrainingRun, run_id)
    if run is not None and run.state == "running":
        batches = int(point.get("batches") or 0)
        total = run.total_epochs
        work = _training_work(point.get("work"))
        if work is not None:
            before = (run.work or {}).get("train_units_done")
            progress = _training_progress(work, (run.work or {}).get("evaluation_factor_prior"))
            # never back within a delivery (the evaluation's estimate grows as the model
            # gets more robust); a resumed run may start again below
            resumed = isinstance(before, (int, float)) and work["train_units_done"] < before
            run.progress = progress if resumed else max(run.progress, progress)
            run.work = {**(run.work or {}), **work, "phase": "training"}
        elif batches > 0 and total > 0:
            run.progress = min(PROGRESS_RUNNING_MAX, step / (batches * total))
        run.heartbeat_at = utcnow()
        run.reproducibility = {
            **(run.reproducibility or {}),
            "batches_per_epoch": batches or None,
            "system": {
                "device": point.get("device"),
                "memory_bytes": _number(point.get("memory_bytes")),
                "images_per_s": values["images_per_s"],
            },
        }
    db.commit()


def _training_work(work: Any) -> dict[str, Any] | None:
    """The work figures of a progress point (None when it carries none: an older library)."""
    if not isinstance(work, dict):
        return None
    kept = {k: _number(work.get(k)) for k in WORK_FIELDS}
    if not kept["train_units"] or kept["train_units_done"] is None:
        return None
    return kept


def _training_progress(work: dict[str, Any], factor: Any = None) -> float:
    """Training's share of the run's work done: the evaluation to come counts as the time it
    takes, its units at one process's pace (training ran on `processes`), times `factor` (how
    much longer the last evaluation like it took than that)."""
    weight = float(factor) if isinstance(factor, (int, float)) and factor > 0 else 1.0
    evaluation = (work["evaluation_units"] or 0.0) * (work["processes"] or 1.0) * weight
    total = work["train_units"] + evaluation
    done = float(work["train_units_done"])
    return min(PROGRESS_RUNNING_MAX, max(0.0, done / float(total)))


EVALUATION_POINT = (
    "stage",
    "label",
    "stage_index",
    "stages",
    "images_done",
    "images",
    "units_done",
    "units_total",
)


def report_evaluation(db: Session, run_id: int, point: dict[str, Any]) -> None:
    """Store how far the run's final evaluation has got (worker/sipat/evaluate.py's point:
    the stage, its images, the work units done and in all) and move the run's progress from
    where training left it towards the end, which it reaches only when the run finishes."""
    run = db.get(TrainingRun, run_id)
    if run is None or run.state != "running":
        return
    now = utcnow()
    work = dict(run.work or {})
    if work.get("phase") != "evaluating":
        work.update(
            phase="evaluating",
            evaluation_started_at=now.isoformat(),
            evaluation_base=run.progress,
        )
    evaluation = {k: point.get(k) for k in EVALUATION_POINT}
    evaluation["at"] = now.isoformat()
    work["evaluation"] = evaluation
    run.work = work
    done, total = _number(point.get("units_done")) or 0.0, _number(point.get("units_total"))
    base = float(work.get("evaluation_base") or 0.0)
    if total:
        share = min(1.0, max(0.0, done / total))
        run.progress = max(run.progress, min(PROGRESS_RUNNING_MAX, base + (1 - base) * share))
    run.heartbeat_at = now
    db.commit()


def finish(
    db: Session, run_id: int, state: str, log_tail: str, *, error: str | None = None, **fields: Any
) -> bool:
    """End a running run as succeeded, failed or cancelled, with its outcome's fields and the
    last log lines (an error as the last one). False, and nothing written, when the run is
    gone or no longer running (queued again meanwhile): the outcome belongs to no one."""
    run = db.get(TrainingRun, run_id)
    if run is None:
        return False
    if not can_move(run.state, state) or run.state != "running":
        _logger.warning("run %s is %s; its %s outcome is not recorded", run_id, run.state, state)
        return False
    move(run, state)
    for k, v in fields.items():
        setattr(run, k, v)
    if run.work:  # the record of how long its evaluation took, when it ran
        work = {**run.work, "phase": state}
        began = work.get("evaluation_started_at")
        if began and work.get("evaluation") and state == "succeeded":
            took = (utcnow() - datetime.fromisoformat(began)).total_seconds()
            work["evaluation_seconds"] = round(took, 1)
            units, rate = work["evaluation"].get("units_total"), work.get("units_per_s")
            if isinstance(units, (int, float)) and isinstance(rate, (int, float)) and units > 0:
                # how much longer it took than its units at training's pace (on one process)
                expected = units * float(work.get("processes") or 1) / rate
                work["evaluation_factor"] = round(took / expected, 3) if expected > 0 else None
        run.work = work
    run.error = error
    run.finished_at = utcnow()
    run.heartbeat_at = utcnow()
    lines = (log_tail or "").splitlines()
    if error:
        lines.append(f"ERROR {error}")
    run.log_tail = "\n".join(lines[-LOG_LINES:]) or run.log_tail
    db.commit()
    if run.sweep_id is not None:
        release_held(db, run.sweep_id)
    return True


def release_held(db: Session, sweep_id: int, enqueue_fn: Enqueue = enqueue) -> list[int]:
    """Send a sweep's held runs (queued without a dispatch token) to the workers, the oldest
    first, until Sweep.in_flight of its runs are at the broker or running: a sweep never
    fills the queue ahead of other people's runs, which are dispatched at once. Called when
    a sweep starts, when one of its runs ends or is cancelled, and by the recovery pass.
    Returns the ids dispatched."""
    sweep = db.scalars(select(Sweep).where(Sweep.id == sweep_id).with_for_update()).first()
    if sweep is None:
        return []
    runs = db.scalars(
        select(TrainingRun)
        .where(TrainingRun.sweep_id == sweep_id, TrainingRun.state.in_(("queued", "running")))
        .order_by(TrainingRun.id)
    ).all()
    busy = sum(1 for r in runs if r.state == "running" or r.celery_task_id is not None)
    held = [r for r in runs if r.state == "queued" and r.celery_task_id is None]
    chosen = held[: max(0, sweep.in_flight - busy)]
    db.commit()  # the sweep's lock ends here; dispatch commits each run's token itself
    for run in chosen:
        dispatch(db, run, enqueue_fn)
    return [r.id for r in chosen]


def release_all_held(db: Session, enqueue_fn: Enqueue = enqueue) -> list[int]:
    """release_held for every sweep with held runs (the recovery's safety net, should a
    release have been missed)."""
    sweep_ids = db.scalars(
        select(TrainingRun.sweep_id)
        .where(
            TrainingRun.sweep_id.is_not(None),
            TrainingRun.state == "queued",
            TrainingRun.celery_task_id.is_(None),
        )
        .distinct()
    ).all()
    db.commit()
    return [i for sweep_id in sweep_ids if sweep_id for i in release_held(db, sweep_id, enqueue_fn)]
