"""Every worker's recovery of the runs nobody else would move again, on a timer of its own.

When the worker is ready: the runs it owned before it restarted (it runs nothing yet, so they
are orphans); then every RUN_RECOVERY_INTERVAL_S, running runs whose worker went quiet and
queued runs whose broker message was lost (backend/services/run_lifecycle.py,
requeue_orphans). A lost message is so sent again within RUN_LOST_MESSAGE_GRACE_S +
RUN_RECOVERY_INTERVAL_S of its dispatch, whether or not anybody looks at the runs.

Each pass also says that the worker is listening (announce: its queues, the GPUs it may
lease and who holds each, what it is doing; backend/services/workers.py), as does the start
and the end of every task; its row goes when it shuts down. The queue view counts those rows
and says "waiting for a worker" when none is fresh.

A daemon thread of the worker's main process rather than a Celery beat schedule: no second
process to deploy, and several workers may run it at once (the lifecycle locks the rows it
moves, skipping those another pass holds). Each pass opens an engine of its own and closes it,
so the timer never shares a pooled connection with the tasks (or with a prefork child).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_ready, worker_shutdown
from sqlalchemy.orm import Session

from backend.core.config import Settings, get_settings
from backend.core.queue import INEQUALITY_TASK, STIMULI_TASK, TRAIN_TASK
from backend.db import make_engine
from backend.services import run_lifecycle as lifecycle
from backend.services import workers

_logger = logging.getLogger(__name__)

# (settings, this worker's name on its first pass, else None) -> the runs moved
Recover = Callable[[Settings, str | None], list[int]]


def recover_once(settings: Settings, restarted: str | None = None) -> list[int]:
    """One pass of the recovery; `restarted`: the name of a worker that has just started,
    whose runs are orphans however recently they beat."""
    engine = make_engine(settings.database_url)
    try:
        with Session(engine, expire_on_commit=False) as db:
            return lifecycle.requeue_orphans(db, settings, hostname=restarted)
    finally:
        engine.dispose()


# the kind of job each task works on, as the queue view names it
JOB_KINDS = {TRAIN_TASK: "run", INEQUALITY_TASK: "evaluation", STIMULI_TASK: "study"}


class _Presence:
    """What this worker process says of itself: its name, the queues it consumes (set when
    it is ready) and the job it is doing (set by the task signals)."""

    hostname: str | None = None
    queues: list[str] = []
    slots: int = 1  # its concurrency: how many jobs it runs at once
    job: dict[str, Any] | None = None


def announce(settings: Settings, hostname: str) -> None:
    """Write this worker's row: its queues, the GPUs it may lease with their holders, its job."""
    from worker import gpu_leases
    from worker.training_tasks import usable_gpus

    gpus = usable_gpus(settings)
    leases = gpu_leases.holders(settings.gpu_lease_dir, gpus) if gpus else {}
    engine = make_engine(settings.database_url)
    try:
        with Session(engine, expire_on_commit=False) as db:
            workers.beat(
                db,
                hostname,
                queues=list(_Presence.queues),
                gpus=gpus,
                leases=leases,
                job=_Presence.job,
                slots=_Presence.slots,
            )
    finally:
        engine.dispose()


def _announce_now() -> None:
    if _Presence.hostname is None:
        return
    try:
        announce(get_settings(), _Presence.hostname)
    except Exception:  # the next pass says it again
        _logger.exception("could not announce worker %s", _Presence.hostname)


class RecoveryTimer:
    """Runs `recover` once at start (as the worker `hostname`), then every `interval_s`
    until stopped; a failed pass is logged and the next one tried."""

    def __init__(
        self,
        settings: Settings,
        hostname: str | None,
        recover: Recover = recover_once,
        interval_s: float | None = None,
    ) -> None:
        self.settings = settings
        self.hostname = hostname
        self.recover = recover
        self.interval_s = max(0.1, interval_s or settings.run_recovery_interval_s)
        self.passes = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="run-recovery", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _pass(self, restarted: str | None) -> None:
        try:
            handled = self.recover(self.settings, restarted)
            if handled:
                _logger.info("recovery: runs %s queued again or given up", handled)
        except Exception:  # a database or broker hiccup: the next pass tries again
            _logger.exception("run recovery failed")
        if self.hostname is not None and self.hostname == _Presence.hostname:
            _announce_now()  # listening (a timer started by a test says nothing)
        self.passes += 1

    def _loop(self) -> None:
        self._pass(self.hostname)
        while not self._stop.wait(self.interval_s):
            self._pass(None)


_timer: RecoveryTimer | None = None


def _start_timer(sender: Any = None, **_: Any) -> None:
    """worker_ready: start this worker's recovery timer (once per worker process)."""
    global _timer
    if _timer is not None:
        return
    hostname = getattr(sender, "hostname", None)
    _Presence.hostname = hostname
    _Presence.queues = _consumed_queues(sender)
    concurrency = getattr(getattr(sender, "controller", None), "concurrency", 1)
    _Presence.slots = concurrency if isinstance(concurrency, int) and concurrency > 0 else 1
    _timer = RecoveryTimer(get_settings(), hostname)
    _timer.start()


def _consumed_queues(sender: Any) -> list[str]:
    """The queues the worker consumes (its -Q), as its app lists them."""
    try:
        return sorted(sender.app.amqp.queues.consume_from.keys())
    except AttributeError:
        return [get_settings().training_queue]


def _stop_timer(**_: Any) -> None:
    """worker_shutdown: stop the timer (a pass under way ends with the process) and take this
    worker's row away: it listens no more."""
    global _timer
    if _timer is not None:
        _timer.stop()
        _timer = None
    if _Presence.hostname is not None:
        try:
            settings = get_settings()
            engine = make_engine(settings.database_url)
            try:
                with Session(engine) as db:
                    workers.forget(db, _Presence.hostname)
            finally:
                engine.dispose()
        except Exception:  # it goes quiet instead, and counts as gone soon after
            _logger.exception("could not remove worker %s", _Presence.hostname)


def _task_started(sender: Any = None, args: Any = None, **_: Any) -> None:
    """task_prerun: say what this worker is doing now."""
    kind = JOB_KINDS.get(getattr(sender, "name", ""))
    try:
        _Presence.job = {"kind": kind, "id": int(args[0])} if kind and args else None
    except (TypeError, ValueError):
        _Presence.job = None
    _announce_now()


def _task_ended(**_: Any) -> None:
    """task_postrun: idle again."""
    _Presence.job = None
    _announce_now()


worker_ready.connect(_start_timer, weak=False)
worker_shutdown.connect(_stop_timer, weak=False)
task_prerun.connect(_task_started, weak=False)
task_postrun.connect(_task_ended, weak=False)
