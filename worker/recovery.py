"""Every worker's recovery of the runs nobody else would move again, on a timer of its own.

When the worker is ready: the runs it owned before it restarted (it runs nothing yet, so they
are orphans); then every RUN_RECOVERY_INTERVAL_S, running runs whose worker went quiet and
queued runs whose broker message was lost (backend/services/run_lifecycle.py,
requeue_orphans). A lost message is so sent again within RUN_LOST_MESSAGE_GRACE_S +
RUN_RECOVERY_INTERVAL_S of its dispatch, whether or not anybody looks at the runs.

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

from celery.signals import worker_ready, worker_shutdown
from sqlalchemy.orm import Session

from backend.core.config import Settings, get_settings
from backend.db import make_engine
from backend.services import run_lifecycle as lifecycle

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
    _timer = RecoveryTimer(get_settings(), getattr(sender, "hostname", None))
    _timer.start()


def _stop_timer(**_: Any) -> None:
    """worker_shutdown: stop the timer (a pass under way ends with the process)."""
    global _timer
    if _timer is not None:
        _timer.stop()
        _timer = None


worker_ready.connect(_start_timer, weak=False)
worker_shutdown.connect(_stop_timer, weak=False)
