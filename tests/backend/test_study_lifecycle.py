"""A study's life as a state machine (backend/services/study_lifecycle.py), on PostgreSQL: the
table of moves is closed and sane, the API's and the generation task's operations make only
moves it allows, with the API's sentences, and a late or repeated task never moves a study
whose generation has ended."""

from __future__ import annotations

import random
import secrets

import pytest

from backend.core.errors import Conflict, Unavailable
from backend.core.queue import STIMULI_TASK
from backend.models import STUDY_STATES, STUDY_TRANSITIONS, Study
from backend.services import study_lifecycle as lc
from tests.backend.lifecycle_support import FakeQueue as Queue
from tests.backend.lifecycle_support import assert_closed_table


def _study(db) -> Study:
    study = Study(
        name="s", design="2afc", config={"seed": 0}, state="draft", link_token=secrets.token_hex(8)
    )
    db.add(study)
    db.commit()
    return study


def test_the_table_of_moves_is_closed_and_every_state_is_reached():
    assert_closed_table(STUDY_TRANSITIONS, STUDY_STATES, "draft")
    # stimuli are made only before a study is opened: nothing open or closed goes back
    assert not {"generating", "ready", "failed"} & {
        *STUDY_TRANSITIONS["open"],
        *STUDY_TRANSITIONS["closed"],
    }


def test_the_api_moves_and_its_refusals(db):
    queue = Queue()
    study = _study(db)
    with pytest.raises(Conflict, match="Only a study whose stimuli are ready can be opened."):
        lc.open_study(db, study)
    lc.start_generation(db, study, queue)
    assert study.state == "generating" and queue.sent == [(STIMULI_TASK, study.id)]
    with pytest.raises(Conflict, match="draft or failed study"):
        lc.start_generation(db, study, queue)
    with pytest.raises(Conflict, match="Only an open study can be closed."):
        lc.close_study(db, study)
    lc.finish_generation(db, study, {"stimulus_bytes": 10})
    assert (study.state, study.progress, study.config["stimulus_bytes"]) == ("ready", 1.0, 10)
    lc.open_study(db, study)
    lc.close_study(db, study)
    lc.open_study(db, study)
    assert study.state == "open"
    # a broker that cannot be reached fails the study with the reason
    other = _study(db)
    queue.down = True
    with pytest.raises(Unavailable):
        lc.start_generation(db, other, queue)
    db.refresh(other)
    assert other.state == "failed" and "could not be reached" in other.error


def test_a_generation_task_claims_only_what_it_may_make(db):
    study = _study(db)
    claimed = lc.claim_generation(db, study.id)  # made directly from a draft
    assert claimed is not None and claimed.state == "generating"
    assert lc.claim_generation(db, study.id) is not None  # a redelivery goes on
    assert lc.fail_generation(db, study.id, "ValueError: no checkpoint")
    db.refresh(study)
    assert (study.state, study.error) == ("failed", "ValueError: no checkpoint")
    assert lc.claim_generation(db, study.id) is None  # a stale message of a failed one
    assert not lc.fail_generation(db, study.id, "again")
    lc.start_generation(db, study, Queue())
    lc.finish_generation(db, study, {})
    lc.open_study(db, study)
    # a late duplicate of the task finds the study open: nothing to make, nothing moved
    assert lc.claim_generation(db, study.id) is None
    assert not lc.fail_generation(db, study.id, "late")
    db.refresh(study)
    assert study.state == "open" and study.error is None
    assert lc.claim_generation(db, 10**9) is None  # gone


def test_random_operations_only_ever_make_allowed_moves(db, monkeypatch):
    """Any interleaving of the API's and the task's operations (duplicated, late, the broker
    sometimes down) moves a study only along the table, and only through lc.move."""
    moves: list[tuple[str, str]] = []
    real_move = lc.move

    def spy(study: Study, to: str, refusal: str | None = None) -> None:
        before = study.state
        real_move(study, to, refusal)
        moves.append((before, to))

    monkeypatch.setattr(lc, "move", spy)
    rng = random.Random(5)
    queue = Queue()
    study = _study(db)
    observed: set[tuple[str, str]] = set()
    for _ in range(300):
        db.expire_all()
        before = db.get(Study, study.id).state
        op = rng.choice(["start", "claim", "finish", "fail", "open", "close"])
        moves.clear()
        queue.down = rng.random() < 0.15
        try:
            if op == "start":
                lc.start_generation(db, study, queue)
            elif op == "claim":
                lc.claim_generation(db, study.id)
            elif op == "finish":
                lc.finish_generation(db, study, {})
            elif op == "fail":
                lc.fail_generation(db, study.id, "boom")
            elif op == "open":
                lc.open_study(db, study)
            else:
                lc.close_study(db, study)
        except (Conflict, Unavailable):
            db.rollback()
        db.expire_all()
        after = db.get(Study, study.id).state
        chain = [before] + [to for _, to in moves]
        assert chain[-1] == after, (op, before, after, moves)
        for a, b in zip(chain, chain[1:], strict=False):
            assert b in STUDY_TRANSITIONS[a], (op, a, b)
            observed.add((a, b))
        if after in ("open", "closed") and rng.random() < 0.2:
            study = _study(db)  # a new study, so that the walk goes round again
    allowed = {(s, t) for s, ts in STUDY_TRANSITIONS.items() for t in ts}
    assert observed == allowed, sorted(allowed - observed)
