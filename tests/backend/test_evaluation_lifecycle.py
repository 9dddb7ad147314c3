"""The inequality evaluation's life as a state machine (backend/services/evaluation_lifecycle.py),
on PostgreSQL: the table of moves is closed and sane, every operation makes only moves it
allows, a finished evaluation is never touched again, and a dead worker's one is taken over."""

from __future__ import annotations

import random

import pytest

from backend.core.errors import Conflict, Unavailable
from backend.core.queue import INEQUALITY_TASK
from backend.models import EVALUATION_STATES, EVALUATION_TRANSITIONS, InequalityEvaluation
from backend.services import evaluation_lifecycle as lc
from tests.backend.lifecycle_support import FakeQueue as Queue
from tests.backend.lifecycle_support import assert_closed_table


def _evaluation(dataset_id: int) -> InequalityEvaluation:
    return InequalityEvaluation(
        run_ids=[1],
        run_key="1",
        dataset_id=dataset_id,
        n_requested=10,
        common_set=False,
        state="queued",
    )


def _dispatched(db, dataset_id: int, queue: Queue) -> InequalityEvaluation:
    evaluation = _evaluation(dataset_id)
    try:
        lc.dispatch(db, evaluation, queue)
    except Unavailable:
        pass
    return evaluation


def test_the_table_of_moves_is_closed_and_terminal_where_it_should_be():
    assert_closed_table(EVALUATION_TRANSITIONS, EVALUATION_STATES, "queued")
    assert lc.FINISHED == ("succeeded", "failed")


def test_a_move_outside_the_table_is_refused(db, seeded):
    evaluation = _dispatched(db, seeded["dataset_id"], Queue())
    with pytest.raises(Conflict):
        lc.move(evaluation, "succeeded")  # never without running
    evaluation.state = "failed"
    with pytest.raises(Conflict):
        lc.move(evaluation, "running")


def test_dispatch_stores_and_sends_or_fails_with_the_reason(db, seeded):
    queue = Queue()
    evaluation = _dispatched(db, seeded["dataset_id"], queue)
    assert evaluation.state == "queued" and queue.sent == [(INEQUALITY_TASK, evaluation.id)]
    queue.down = True
    with pytest.raises(Unavailable):
        lc.dispatch(db, _evaluation(seeded["dataset_id"]), queue)
    failed = db.query(InequalityEvaluation).order_by(InequalityEvaluation.id.desc()).first()
    assert failed.state == "failed" and "ConnectionError" in failed.error
    assert failed.finished_at is not None


def test_claim_progress_and_outcome_and_nothing_after_the_end(db, seeded):
    evaluation = _dispatched(db, seeded["dataset_id"], Queue())
    claimed = lc.claim(db, evaluation.id)
    assert claimed is not None and claimed.state == "running" and claimed.progress == 0
    lc.report_progress(db, claimed, 0.4)
    # the worker died; the message comes again: taken over from the start
    again = lc.claim(db, evaluation.id)
    assert again is not None and again.state == "running" and again.progress == 0
    assert lc.finish(db, evaluation.id, {"runs": {}})
    db.refresh(evaluation)
    assert (evaluation.state, evaluation.progress) == ("succeeded", 1.0)
    assert evaluation.result == {"runs": {}} and evaluation.finished_at is not None
    # finished: a late delivery, failure or result changes nothing
    assert lc.claim(db, evaluation.id) is None
    assert not lc.fail(db, evaluation.id, "late")
    assert not lc.finish(db, evaluation.id, {"runs": {"x": 1}})
    db.refresh(evaluation)
    assert evaluation.state == "succeeded" and evaluation.error is None
    assert lc.claim(db, 10**9) is None  # gone


def test_random_operations_only_ever_make_allowed_moves(db, seeded, monkeypatch):
    """Any interleaving of dispatches (the broker sometimes down), claims, redeliveries,
    progress, results and failures moves an evaluation only along the table, through lc.move."""
    moves: list[tuple[str, str]] = []
    real_move = lc.move

    def spy(evaluation: InequalityEvaluation, to: str) -> None:
        before = evaluation.state
        real_move(evaluation, to)
        moves.append((before, to))

    monkeypatch.setattr(lc, "move", spy)
    rng = random.Random(11)
    queue = Queue()
    observed: set[tuple[str, str]] = set()
    evaluation = _dispatched(db, seeded["dataset_id"], queue)
    observed.update(moves)
    for _ in range(200):
        db.expire_all()
        before = db.get(InequalityEvaluation, evaluation.id).state
        if before in lc.FINISHED and rng.random() < 0.5:
            moves.clear()
            queue.down = rng.random() < 0.3
            evaluation = _dispatched(db, seeded["dataset_id"], queue)
            observed.update(moves)
            continue
        op = rng.choice(["claim", "progress", "finish", "fail"])
        moves.clear()
        if op == "claim":
            lc.claim(db, evaluation.id)
        elif op == "progress":
            if before == "running":
                lc.report_progress(db, evaluation, rng.random())
        elif op == "finish":
            lc.finish(db, evaluation.id, {"runs": {}})
        else:
            lc.fail(db, evaluation.id, "boom")
        db.expire_all()
        after = db.get(InequalityEvaluation, evaluation.id).state
        chain = [before] + [to for _, to in moves]
        assert chain[-1] == after, (op, before, after, moves)
        for a, b in zip(chain, chain[1:], strict=False):
            assert b in EVALUATION_TRANSITIONS[a], (op, a, b)
            observed.add((a, b))
    allowed = {(s, t) for s, ts in EVALUATION_TRANSITIONS.items() for t in ts}
    assert observed == allowed, sorted(allowed - observed)
