"""The run lifecycle as a state machine (backend/services/run_lifecycle.py), on PostgreSQL:
the table of moves is closed and sane, every operation makes only moves it allows, and the
worker's claim / report / finish keep their promises (one owner, nothing recorded twice,
nothing recorded for a run that was queued again)."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest

from backend.core.config import get_settings
from backend.core.errors import Conflict, Unavailable
from backend.core.queue import TRAIN_TASK
from backend.models import (
    FINISHED_STATES,
    RUN_STATES,
    RUN_TRANSITIONS,
    RunEpoch,
    TrainingRun,
    utcnow,
)
from backend.services import run_lifecycle as lc
from tests.backend.lifecycle_support import FakeQueue as Queue
from tests.backend.lifecycle_support import assert_closed_table


def _run(db, dataset_id: int) -> TrainingRun:
    run = TrainingRun(
        name="r",
        group_key="g",
        dataset_id=dataset_id,
        method="standard",
        config={"seed": 0, "epochs": 2},
        state="queued",
        total_epochs=2,
    )
    db.add(run)
    db.commit()
    return run


def test_the_table_of_moves_is_closed_and_terminal_where_it_should_be():
    assert_closed_table(RUN_TRANSITIONS, RUN_STATES, "queued")
    assert RUN_TRANSITIONS["succeeded"] == ()
    for state in FINISHED_STATES:
        assert set(RUN_TRANSITIONS[state]) <= {"queued"}, (
            "a finished run only goes back to the queue"
        )


def test_a_move_outside_the_table_is_refused(db, seeded):
    run = _run(db, seeded["dataset_id"])
    run.state = "succeeded"
    with pytest.raises(Conflict):
        lc.move(run, "running")
    with pytest.raises(Conflict):
        lc.cancel_run(db, run)
    with pytest.raises(Conflict):
        lc.retry_run(db, run, Queue())


def test_random_operations_only_ever_make_allowed_moves(db, seeded, monkeypatch):
    """Any interleaving of the API's and the worker's operations, including duplicated and
    stale messages, a broker outage and silent workers, moves a run only along the table, and
    only through lc.move (no operation sets a state behind the table's back)."""
    moves: list[tuple[str, str]] = []
    real_move = lc.move

    def spy(run: TrainingRun, to: str) -> None:
        before = run.state
        real_move(run, to)
        moves.append((before, to))

    monkeypatch.setattr(lc, "move", spy)
    settings = get_settings()
    rng = random.Random(7)
    queue = Queue()
    run = _run(db, seeded["dataset_id"])
    lc.dispatch(db, run, queue)
    observed: set[tuple[str, str]] = set()
    tokens = [run.celery_task_id]
    for _ in range(400):
        before = db.get(TrainingRun, run.id).state
        if before == "succeeded":  # terminal: go on with a new run
            run = _run(db, seeded["dataset_id"])
            lc.dispatch(db, run, queue)
            tokens.append(run.celery_task_id)
            before = db.get(TrainingRun, run.id).state
        op = rng.choice(["cancel", "retry", "claim", "stale", "finish", "orphans", "epoch"])
        moves.clear()
        queue.down = rng.random() < 0.1
        try:
            if op == "cancel":
                lc.cancel_run(db, run)
            elif op == "retry":
                lc.retry_run(db, run, queue)
                tokens.append(run.celery_task_id)
            elif op in ("claim", "stale"):
                token = run.celery_task_id if op == "claim" else rng.choice(tokens)
                lc.claim(
                    db, run.id, token, rng.choice(["w1", "w2"]), settings.run_heartbeat_timeout_s
                )
            elif op == "finish":
                lc.finish(db, run.id, rng.choice(FINISHED_STATES), "log")
            elif op == "orphans":
                later = utcnow() + timedelta(seconds=settings.run_heartbeat_timeout_s + 1)
                lc.requeue_orphans(db, settings, enqueue_fn=queue, now=later)
                tokens.append(db.get(TrainingRun, run.id).celery_task_id)
            else:
                lc.report_epoch(db, run.id, rng.randint(1, 2), 2, {"train_loss": 1.0}, "log")
        except (Conflict, Unavailable):  # a retry while the queue is down: failed, and said
            db.rollback()
        db.expire_all()
        after = db.get(TrainingRun, run.id).state
        # the stored change is exactly a chain of moves the table allows
        chain = [before] + [to for _, to in moves]
        assert chain[-1] == after, (op, before, after, moves)
        for a, b in zip(chain, chain[1:], strict=False):
            assert b in RUN_TRANSITIONS[a], (op, a, b)
            observed.add((a, b))
    # the walk exercised most of the table, so the assertion above was not vacuous
    allowed = {(s, t) for s, ts in RUN_TRANSITIONS.items() for t in ts}
    assert observed == allowed, sorted(allowed - observed)


def test_claim_has_one_owner_and_refuses_stale_or_finished_deliveries(db, seeded):
    timeout = 60.0
    queue = Queue()
    run = _run(db, seeded["dataset_id"])
    lc.dispatch(db, run, queue)
    token = run.celery_task_id
    assert queue.sent == [(TRAIN_TASK, run.id, token)]
    assert lc.claim(db, run.id, "old-token", "w1", timeout) == "superseded by a newer dispatch"
    assert lc.claim(db, run.id, token, "w1", timeout) is None
    db.refresh(run)
    assert (run.state, run.worker_hostname, run.attempts) == ("running", "w1", 1)
    # another worker gets the same message while w1 still beats: it leaves the run alone
    assert lc.claim(db, run.id, token, "w2", timeout) == "running on w1"
    # w1 goes quiet: w2 takes the run over as it stands (still running, a new attempt)
    run.heartbeat_at = utcnow() - timedelta(seconds=2 * timeout)
    db.commit()
    assert lc.claim(db, run.id, token, "w2", timeout) is None
    db.refresh(run)
    assert (run.state, run.worker_hostname, run.attempts) == ("running", "w2", 2)
    assert lc.finish(db, run.id, "succeeded", "done", progress=1.0)
    assert lc.claim(db, run.id, token, "w1", timeout) == "run already succeeded"


def test_a_cancel_before_the_claim_ends_the_run_without_training(db, seeded):
    run = _run(db, seeded["dataset_id"])
    lc.dispatch(db, run, Queue())
    lc.cancel_run(db, run)
    assert run.state == "cancelled"
    assert lc.claim(db, run.id, run.celery_task_id, "w1", 60.0) == "run already cancelled"


def test_finish_records_nothing_for_a_run_that_was_queued_again(db, seeded):
    settings = get_settings()
    queue = Queue()
    run = _run(db, seeded["dataset_id"])
    lc.dispatch(db, run, queue)
    lc.claim(db, run.id, run.celery_task_id, "w1", settings.run_heartbeat_timeout_s)
    later = utcnow() + timedelta(seconds=settings.run_heartbeat_timeout_s + 1)
    assert lc.requeue_orphans(db, settings, enqueue_fn=queue, now=later) == [run.id]
    db.refresh(run)
    assert run.state == "queued" and len(queue.sent) == 2
    assert "w1 went silent" in (run.resent_why or "") and run.resent_at is not None
    # the silent worker wakes up and reports success: the run is not its own any more
    assert not lc.finish(db, run.id, "succeeded", "late", final_metrics={"final": {}})
    db.refresh(run)
    assert run.state == "queued" and run.final_metrics is None


def test_an_unreachable_queue_fails_the_run_with_a_sentence(db, seeded):
    queue = Queue()
    queue.down = True
    run = _run(db, seeded["dataset_id"])
    lc.dispatch(db, run, queue)
    assert run.state == "failed"
    assert "could not be reached" in run.error and run.error.endswith("retry the run.")
    queue.down = False
    lc.retry_run(db, run, queue)
    assert run.state == "queued" and run.error is None


def test_epoch_reports_are_stored_once_per_epoch(db, seeded):
    run = _run(db, seeded["dataset_id"])
    lc.dispatch(db, run, Queue())
    lc.claim(db, run.id, run.celery_task_id, "w1", 60.0)
    for loss in (3.0, 2.0):  # a resumed run reports epoch 1 again
        lc.report_epoch(db, run.id, 1, 2, {"train_loss": loss}, "tail")
    rows = db.query(RunEpoch).filter_by(run_id=run.id).all()
    assert [(r.epoch, r.metrics["train_loss"]) for r in rows] == [(1, 2.0)]
    db.refresh(run)
    assert (run.current_epoch, run.progress, run.log_tail) == (1, 0.5, "tail")
    assert lc.heartbeat(db, run.id, "beat")
    lc.finish(db, run.id, "failed", "last line", error="ValueError: boom")
    db.refresh(run)
    assert run.log_tail.splitlines()[-1] == "ERROR ValueError: boom"
    assert not lc.heartbeat(db, run.id, "after the end")


def test_a_queued_run_whose_message_was_lost_is_dispatched_again(db, seeded):
    """A real Redis broker restarts empty while a run waits in the queue: the run is found
    and sent again with a new token; a run whose message is still there is left alone."""
    import redis

    from backend.core.queue import enqueue, held_tokens

    def broker_holds(token: str) -> bool | None:
        held = held_tokens([token])
        return None if held is None else token in held

    settings = get_settings()
    assert settings.celery_broker_url.startswith("redis")
    broker = redis.Redis.from_url(settings.celery_broker_url)
    broker.delete(settings.training_queue, "unacked")
    waiting, lost = _run(db, seeded["dataset_id"]), _run(db, seeded["dataset_id"])
    lc.dispatch(db, waiting, enqueue)
    lc.dispatch(db, lost, enqueue)
    assert broker_holds(waiting.celery_task_id) and broker_holds(lost.celery_task_id)
    old_token = lost.celery_task_id
    # the broker loses what it held, then the waiting run's message is sent again by hand
    broker.delete(settings.training_queue, "unacked")
    enqueue(TRAIN_TASK, waiting.id, waiting.celery_task_id)
    assert broker_holds(lost.celery_task_id) is False
    # within the grace period nothing is judged lost (a message may be in flight)
    assert lc.requeue_lost_messages(db, settings) == []
    later = utcnow() + timedelta(seconds=settings.run_lost_message_grace_s + 1)
    assert lc.requeue_orphans(db, settings, now=later) == [lost.id]
    db.refresh(lost)
    assert lost.state == "queued" and lost.celery_task_id != old_token
    assert broker_holds(lost.celery_task_id), "the new message is in the queue"
    assert "lost" in lost.log_tail
    # the run keeps when and why it was sent again (its page shows them)
    assert lost.resent_at is not None and "message was lost" in lost.resent_why
    assert waiting.resent_at is None
    # a broker that cannot be read judges nothing lost
    assert lc.requeue_lost_messages(db, settings, holds=lambda *_: None, now=later) == []
    broker.delete(settings.training_queue, "unacked")
