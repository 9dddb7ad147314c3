"""The workers' recovery runs on their own timer (worker/recovery.py), not on a request: a run
whose broker message was lost is sent again, and trained, by a REAL Celery worker within
RUN_LOST_MESSAGE_GRACE_S + RUN_RECOVERY_INTERVAL_S, with no API server and nobody listing the
runs; the run keeps when and why it was sent again. The timer itself: a first pass as the
restarted worker, then one pass per interval, a failed pass never ending it."""

from __future__ import annotations

import threading
import time
import uuid

import pytest

from tests.worker.test_training_tasks import (  # noqa: F401 - dataset_id is a fixture
    TINY,
    Worker,
    dataset_id,
    read,
    wait_for,
)

QUEUE = f"recovery-test-{uuid.uuid4().hex[:8]}"
GRACE_S, INTERVAL_S = 1, 1.0


@pytest.fixture()
def recovering_worker(pg_database, tmp_path):
    w = Worker(
        tmp_path,
        queue=QUEUE,
        node="recovery@runs-test",
        env={
            "RUN_LOST_MESSAGE_GRACE_S": str(GRACE_S),
            "RUN_RECOVERY_INTERVAL_S": str(INTERVAL_S),
        },
    )
    w.start()
    deadline = time.monotonic() + 120
    while " ready." not in w.log():  # past its start-up pass: what follows is the timer's
        assert w.proc is not None and w.proc.poll() is None, w.log()
        assert time.monotonic() < deadline, w.log()
        time.sleep(0.2)
    yield w
    w.stop()


def test_a_lost_message_is_sent_again_on_schedule_with_nobody_listing(
    recovering_worker,
    db,
    dataset_id,  # noqa: F811
):
    from backend.services.runs.launch import create_runs

    def lose(*_: object) -> str:  # the broker never gets the message
        return "lost"

    form = {"dataset_id": dataset_id, **TINY, "epochs": 1, "seed": 7}
    (run,) = create_runs(db, None, form, enqueue_fn=lose)
    token, t0 = run.celery_task_id, time.monotonic()
    resent = wait_for(run.id, lambda r: r.resent_at is not None, recovering_worker, timeout=60)
    waited = time.monotonic() - t0
    print(
        f"\nlost message sent again after {waited:.1f} s "
        f"(bound {GRACE_S + INTERVAL_S:g} s and a pass)"
    )
    assert waited < GRACE_S + INTERVAL_S + 10
    assert resent.celery_task_id != token
    assert "message was lost" in (resent.resent_why or "") and "lost" in resent.log_tail
    done = wait_for(run.id, lambda r: r.state == "succeeded", recovering_worker)
    assert done.attempts == 1 and done.resent_at == resent.resent_at
    # once running, nothing else of it is judged lost or orphaned
    assert read(run.id).celery_task_id == resent.celery_task_id


def test_the_timer_passes_first_as_the_restarted_worker_then_on_every_interval():
    from backend.core.config import get_settings
    from worker.recovery import RecoveryTimer

    calls: list[str | None] = []
    third = threading.Event()

    def recover(_settings: object, restarted: str | None) -> list[int]:
        calls.append(restarted)
        if len(calls) == 2:
            raise ConnectionError("database restarting")  # logged; the next pass comes
        if len(calls) >= 3:
            third.set()
        return []

    timer = RecoveryTimer(get_settings(), "w@host", recover=recover, interval_s=0.1)
    timer.start()
    assert third.wait(10), calls
    timer.stop()
    n = len(calls)
    time.sleep(0.3)
    assert len(calls) == n, "a stopped timer passes no more"
    assert calls[0] == "w@host" and set(calls[1:]) == {None}
