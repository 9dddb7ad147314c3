"""The Celery workers that are listening, as each last said so (a row per worker,
backend/models.py: WorkerPresence). A worker writes its row on its recovery timer
(worker/recovery.py, every RUN_RECOVERY_INTERVAL_S) and when a task starts or ends, and
deletes it when it shuts down; a worker killed outright goes quiet and counts as gone once
it has been silent for silent_after_s. The queue view reads them (backend/services/
work_queue.py): who does what on which GPU, and "waiting for a worker" when none listens.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from backend.core.config import Settings
from backend.models import WorkerPresence, utcnow

# a worker that has not said anything for this many of its timer's intervals is gone
SILENT_INTERVALS = 3
SILENT_MIN_S = 60.0


def silent_after_s(settings: Settings) -> float:
    """How long a worker may stay quiet and still count as listening."""
    return max(SILENT_MIN_S, SILENT_INTERVALS * settings.run_recovery_interval_s)


def beat(
    db: Session,
    hostname: str,
    *,
    queues: list[str],
    gpus: list[str],
    leases: dict[str, Any],
    job: dict[str, Any] | None,
    slots: int = 1,
    now: datetime | None = None,
) -> None:
    """Say that worker `hostname` is listening on `queues`, may lease `gpus` (`leases`: who
    holds each now), does `job` ({"kind": "run" | "evaluation" | "study", "id": ...}, None
    when idle) and runs `slots` jobs at once (its concurrency; kept in the job's record as
    "slots")."""
    now = now or utcnow()
    row = db.scalars(select(WorkerPresence).where(WorkerPresence.hostname == hostname)).first()
    if row is None:
        row = WorkerPresence(hostname=hostname, started_at=now)
        db.add(row)
    record = {**(job or {}), "slots": slots}
    row.queues, row.gpus, row.leases, row.job, row.seen_at = queues, gpus, leases, record, now
    db.commit()


def forget(db: Session, hostname: str) -> None:
    """The worker has shut down."""
    db.execute(delete(WorkerPresence).where(WorkerPresence.hostname == hostname))
    db.commit()


def listening(db: Session, settings: Settings, now: datetime | None = None) -> list[WorkerPresence]:
    """The workers heard from within silent_after_s, by name."""
    since = (now or utcnow()) - timedelta(seconds=silent_after_s(settings))
    return list(
        db.scalars(
            select(WorkerPresence)
            .where(WorkerPresence.seen_at >= since)
            .order_by(WorkerPresence.hostname)
        ).all()
    )
