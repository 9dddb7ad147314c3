"""Issue 29 on PostgreSQL: a run's progress weighs its final evaluation (the bar is full only
when the run has ended), its time left includes the evaluation (estimated from the
configuration at training's pace, then measured), and work that waits has a place in one
queue: position, an estimated start over the listening workers, or "waiting for a worker"
when none listens."""

from __future__ import annotations

from datetime import timedelta

import pytest

from backend.core.config import get_settings
from backend.db import get_sessionmaker
from backend.models import TrainingRun, utcnow
from backend.services import run_lifecycle as lifecycle
from backend.services import work_queue, workers
from backend.services.runs import live
from tests.backend.test_run_live import _no_queue, point, report, running_run


def work(done: float, total: float = 1000.0, evaluation: float = 3000.0) -> dict:
    return {"train_units": total, "train_units_done": done, "evaluation_units": evaluation,
            "processes": 1, "units_per_s": 100.0}  # fmt: skip


def evaluation_point(done: float, total: float, stage: str = "aa:apgd-ce") -> dict:
    return {"stage": stage, "label": "AutoAttack APGD-CE at ε 8/255", "stage_index": 3,
            "stages": 6, "images_done": 4, "images": 8, "units_done": done,
            "units_total": total}  # fmt: skip


def evaluate(run_id: int, *points: dict) -> None:
    for p in points:
        with get_sessionmaker()() as s:
            lifecycle.report_evaluation(s, run_id, p)


def test_progress_reaches_its_end_only_when_the_run_does(client, seeded, auth, db):
    run_id = running_run(db, seeded["dataset_id"], epochs=2)
    seen = []
    for step, done in ((5, 250.0), (10, 500.0), (20, 1000.0)):
        report(run_id, point(step, batches=10, work=work(done)))
        db.expire_all()
        seen.append(db.get(TrainingRun, run_id).progress)
    # training is a quarter of the work: the evaluation's 3000 units are the rest
    assert seen == pytest.approx([250 / 4000, 500 / 4000, 1000 / 4000])
    evaluate(run_id, evaluation_point(0, 2000), evaluation_point(1000, 2000),
             evaluation_point(2000, 2000, stage="aa_pgd"))  # fmt: skip
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    assert run.work["phase"] == "evaluating"
    assert run.progress == pytest.approx(lifecycle.PROGRESS_RUNNING_MAX)  # not full yet
    summary = client.get(f"/api/runs/{run_id}", headers=auth["researcher"]).json()
    assert summary["work"]["evaluation"]["label"] == "AutoAttack APGD-CE at ε 8/255"
    assert summary["progress"] < 1
    with get_sessionmaker()() as s:
        assert lifecycle.finish(s, run_id, "succeeded", "", progress=1.0)
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    assert run.progress == 1.0 and run.work["phase"] == "succeeded"
    assert run.work["evaluation_seconds"] >= 0
    listed = client.get("/api/runs", headers=auth["researcher"]).json()["data"]
    assert [r["progress"] for r in listed if r["id"] == run_id] == [1.0]


def test_time_left_includes_the_evaluation_then_measures_it(client, seeded, auth, db):
    run_id = running_run(db, seeded["dataset_id"], epochs=4)
    # 40 batches of 100 units: the batch rate makes training's pace 100 units/s
    report(run_id, point(5, batches=10, work=work(500, total=4000)),
           point(15, batches=10, work=work(1500, total=4000)))  # fmt: skip
    db.expire_all()
    now = utcnow()
    run = db.get(TrainingRun, run_id)
    run.started_at = now - timedelta(seconds=30)
    for p in live.pace_points(db, run):  # 1 batch/s; 25 batches left, the last point 1 s ago
        p.created_at = now - timedelta(seconds=11 if p.step == 5 else 1)
    db.commit()
    left = live.time_left_s(run, live.pace_points(db, run), now)
    # training's 24 s and the evaluation's 3000 units at 100 units/s
    assert left == pytest.approx(24 + 30, abs=1)
    evaluate(run_id, evaluation_point(0, 2000))
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    # nothing measured of the evaluation yet: its units at training's pace
    assert live.time_left_s(run, (), utcnow()) == pytest.approx(20, abs=1)
    work_now = dict(run.work)
    began = utcnow() - timedelta(seconds=10)
    work_now["evaluation_started_at"] = began.isoformat()
    work_now["evaluation"] = {**work_now["evaluation"], "units_done": 500.0,
                              "at": utcnow().isoformat()}  # fmt: skip
    run.work = work_now
    db.commit()
    # 500 units in 10 s: 1500 left take 30 s
    assert live.time_left_s(run, (), utcnow()) == pytest.approx(30, abs=1)
    # past its estimate without ending: no time is promised
    assert live.time_left_s(run, (), utcnow() + timedelta(seconds=60)) is None


def _queued(db, dataset_id: int, name: str) -> int:
    from backend.services.runs.launch import create_runs

    form = {"dataset_id": dataset_id, "model": "small_cnn", "epochs": 1, "batch_size": 8,
            "name": name}  # fmt: skip
    (run,) = create_runs(db, None, form, enqueue_fn=_no_queue)
    return run.id


def test_queued_runs_have_a_position_and_wait_for_a_worker(client, seeded, auth, db):
    settings = get_settings()
    first = _queued(db, seeded["dataset_id"], "first")
    second = _queued(db, seeded["dataset_id"], "second")
    d = client.get(f"/api/runs/{second}", headers=auth["researcher"]).json()
    assert d["queue"]["position"] == 2 and d["queue"]["of"] == 2
    assert d["queue"]["listening"] == 0 and d["queue"]["start_in_s"] is None
    view = client.get("/api/queue", headers=auth["researcher"]).json()
    assert [(i["kind"], i["id"], i["position"]) for i in view["queued"]] == [
        ("run", first, 1),
        ("run", second, 2),
    ]
    assert view["listening"] == 0 and view["workers"] == []
    # a worker of another queue does not count; one of the training queue does
    workers.beat(db, "other@host", queues=["elsewhere"], gpus=[], leases={}, job=None)
    workers.beat(db, "w1@host", queues=[settings.training_queue], gpus=["0"],
                 leases={"0": f"run {first} (w1@host)"}, job=None)  # fmt: skip
    # the first run starts on it, 40 s left to go
    run = db.get(TrainingRun, first)
    run.state, run.started_at, run.worker_hostname = "running", utcnow(), "w1@host"
    db.commit()
    view = client.get("/api/queue", headers=auth["researcher"]).json()
    assert view["listening"] == 1 and [w["hostname"] for w in view["workers"]] == ["w1@host"]
    assert view["running"][0]["id"] == first and view["running"][0]["gpus"] == ["0"]
    assert view["workers"][0]["doing"][0]["id"] == first
    (waiting,) = view["queued"]
    assert waiting["id"] == second and waiting["position"] == 1
    assert waiting["worker"] == "w1@host"
    # the first run's time left is unknown (nothing measured): a start no sooner than now
    assert waiting["start_in_s"] == 0 and waiting["start_is_lower_bound"] is True
    # a worker silent for longer than silent_after_s is gone
    later = utcnow() + timedelta(seconds=workers.silent_after_s(settings) + 1)
    assert work_queue.build(db, settings, now=later).listening == 0
    workers.forget(db, "w1@host")
    assert work_queue.build(db, settings).listening == 0


def test_a_queued_items_start_is_the_time_left_of_the_work_ahead():
    """Played out over two workers: each takes the next item when it is free; after an item
    of unknown length, a start is a lower bound."""
    running = [work_queue.Item("run", 1, "r1", "running", "#/runs/1", worker="a@h",
                               time_left_s=100.0),
               work_queue.Item("run", 2, "r2", "running", "#/runs/2", worker="b@h",
                               time_left_s=30.0)]  # fmt: skip
    queued = [work_queue.Item("run", i, f"q{i}", "queued", f"#/runs/{i}", duration_s=d)
              for i, d in ((3, 50.0), (4, None), (5, 10.0))]  # fmt: skip
    work_queue._play_out(running, queued, ["a@h", "b@h"])
    assert [(q.position, q.worker, q.start_in_s, q.start_is_lower_bound) for q in queued] == [
        (1, "b@h", 30.0, False),
        (2, "b@h", 80.0, False),
        (3, "b@h", 80.0, True),
    ]


def test_a_studys_stimulus_job_waits_in_the_same_queue(client, seeded, auth, db):
    """A study whose stimuli are queued (no worker has taken its task) has a place after the
    work sent before it; once a worker says it makes them, it is running."""
    from backend.models import Study

    run_id = _queued(db, seeded["dataset_id"], "ahead")
    study = Study(name="waits", design="2afc", config={}, state="generating",
                  link_token="queue-test-token")  # fmt: skip
    db.add(study)
    db.commit()
    d = client.get(f"/api/studies/{study.id}", headers=auth["researcher"]).json()
    assert d["queue"]["position"] == 2 and d["queue"]["listening"] == 0
    view = client.get("/api/queue", headers=auth["researcher"]).json()
    assert [(i["kind"], i["id"]) for i in view["queued"]] == [("run", run_id), ("study", study.id)]
    settings = get_settings()
    workers.beat(db, "w@host", queues=[settings.training_queue], gpus=[], leases={},
                 job={"kind": "study", "id": study.id})  # fmt: skip
    d = client.get(f"/api/studies/{study.id}", headers=auth["researcher"]).json()
    assert d["queue"] is None
    view = client.get("/api/queue", headers=auth["researcher"]).json()
    assert [(i["kind"], i["worker"]) for i in view["running"]] == [("study", "w@host")]
    workers.forget(db, "w@host")


def test_the_next_runs_estimate_learns_how_long_the_last_evaluation_took(seeded, db):
    """A finished evaluation that took 4 times its units at training's pace makes the next
    run of the same dataset and model expect its evaluation to take 4 times as long."""
    first = running_run(db, seeded["dataset_id"])
    report(first, point(20, batches=10, work=work(1000)))
    evaluate(first, evaluation_point(0, 2000), evaluation_point(2000, 2000, stage="aa_pgd"))
    db.expire_all()
    run = db.get(TrainingRun, first)
    began = utcnow() - timedelta(seconds=80)  # 2000 units at 100 units/s: 20 s expected
    run.work = {**run.work, "evaluation_started_at": began.isoformat()}
    db.commit()
    with get_sessionmaker()() as s:
        assert lifecycle.finish(s, first, "succeeded", "", progress=1.0)
    db.expire_all()
    assert db.get(TrainingRun, first).work["evaluation_factor"] == pytest.approx(4, abs=0.05)
    second = _queued(db, seeded["dataset_id"], "second")
    with get_sessionmaker()() as s:
        assert lifecycle.claim(s, second, None, "w@host", 600) is None
    report(second, point(5, batches=10, work=work(100)))
    db.expire_all()
    run = db.get(TrainingRun, second)
    assert run.work["evaluation_factor_prior"] == pytest.approx(4, abs=0.05)
    # the evaluation's 3000 units at 100 units/s, four times over, and as heavy on the bar
    assert live.evaluation_estimate_s(run.work) == pytest.approx(120, abs=2)
    assert run.progress == pytest.approx(100 / (1000 + 4 * 3000), rel=0.02)


def test_a_worker_that_runs_two_jobs_at_once_takes_two_from_the_queue():
    running = [work_queue.Item("run", 1, "r1", "running", "#/runs/1", worker="a@h",
                               time_left_s=60.0)]  # fmt: skip
    queued = [work_queue.Item("run", i, f"q{i}", "queued", f"#/runs/{i}", duration_s=30.0)
              for i in (2, 3, 4)]  # fmt: skip
    work_queue._play_out(running, queued, {"a@h": 2})
    assert [(q.worker, q.start_in_s) for q in queued] == [("a@h", 0.0), ("a@h", 30.0),
                                                          ("a@h", 60.0)]  # fmt: skip
