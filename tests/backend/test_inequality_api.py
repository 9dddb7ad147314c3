"""The inequality-evaluation API: what it refuses and with which sentence, what it stores and
queues, and how the compare page finds the latest evaluation of a set of runs. Runs are rows
made here (the work itself is tested in tests/worker/test_inequality_task.py)."""

from __future__ import annotations

import pytest

URL = "/api/runs/inequality"


def make_run(db, dataset_id: int, state: str = "succeeded", **config) -> int:
    from backend.models import TrainingRun

    run = TrainingRun(
        dataset_id=dataset_id,
        method="pgd_at",
        config={"method": "pgd_at", "model": "small_cnn", "seed": 0, **config},
        state=state,
        checkpoint_key="runs/0/out" if state == "succeeded" else None,
    )
    db.add(run)
    db.commit()
    return run.id


@pytest.fixture()
def other_dataset(db, client, auth) -> int:
    from tests.conftest import tiny_imagefolder_zip

    r = client.post(
        "/api/datasets/import",
        headers=auth["researcher"],
        data={"name": "other"},
        files={"file": ("o.zip", tiny_imagefolder_zip(per_class=2), "application/zip")},
    )
    assert r.status_code == 201, r.text
    return r.json()["id"]


@pytest.fixture()
def queued(monkeypatch) -> list[tuple]:
    """Messages the API sends, caught before the broker."""
    from backend.services import inequality

    sent: list[tuple] = []
    monkeypatch.setattr(inequality, "enqueue", lambda *args: sent.append(args) or "task-id")
    return sent


def test_start_stores_a_queued_evaluation_and_queues_it(client, seeded, auth, db, queued):
    from backend.core.queue import INEQUALITY_TASK

    a, b = make_run(db, seeded["dataset_id"]), make_run(db, seeded["dataset_id"])
    r = client.post(URL, headers=auth["researcher"], json={"run_ids": [b, a, b], "n": 50})
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["run_ids"] == [b, a] and body["n_requested"] == 50
    assert body["state"] == "queued" and body["progress"] == 0 and body["result"] is None
    assert body["common_set"] is True and body["dataset_id"] == seeded["dataset_id"]
    assert queued == [(INEQUALITY_TASK, body["id"])]
    got = client.get(f"{URL}/{body['id']}", headers=auth["researcher"])
    assert got.status_code == 200 and got.json()["id"] == body["id"]

    single = client.post(URL, headers=auth["researcher"], json={"run_ids": [a]}).json()
    assert single["common_set"] is False and single["n_requested"] == 200


def test_latest_evaluation_of_exactly_a_set_of_runs(client, seeded, auth, db, queued):
    a, b = make_run(db, seeded["dataset_id"]), make_run(db, seeded["dataset_id"])
    first = client.post(URL, headers=auth["researcher"], json={"run_ids": [a, b]}).json()
    second = client.post(URL, headers=auth["researcher"], json={"run_ids": [b, a]}).json()
    client.post(URL, headers=auth["researcher"], json={"run_ids": [a]})
    r = client.get(URL, headers=auth["researcher"], params={"run_ids": f"{b},{a}"})
    assert r.status_code == 200, r.text
    assert [e["id"] for e in r.json()["data"]] == [second["id"], first["id"]]
    r = client.get(URL, headers=auth["researcher"], params={"run_ids": f"{a},{b}", "limit": 1})
    assert [e["id"] for e in r.json()["data"]] == [second["id"]]
    none = client.get(URL, headers=auth["researcher"], params={"run_ids": "424242"}).json()
    assert none == {"data": [], "count": 0}


@pytest.mark.parametrize(
    ("body", "detail"),
    [
        ({"run_ids": []}, "Choose at least one run."),
        ({"run_ids": list(range(1, 22))}, "Choose at most 20 runs at once."),
        ({"run_ids": ["A"]}, None),
        ({"n": 0}, "The number of images must be between 1 and 2000."),
        ({"n": 2001}, "The number of images must be between 1 and 2000."),
    ],
)
def test_bad_requests_are_refused_with_a_sentence(client, seeded, auth, db, queued, body, detail):
    run = make_run(db, seeded["dataset_id"])
    r = client.post(URL, headers=auth["researcher"], json={"run_ids": [run], **body})
    assert r.status_code == 422, r.text
    if detail is not None:
        assert r.json()["detail"] == detail
    assert queued == []


def test_runs_that_cannot_be_evaluated_are_named(client, seeded, auth, db, queued, other_dataset):
    from backend.models import InequalityEvaluation

    ok = make_run(db, seeded["dataset_id"])
    failed = make_run(db, seeded["dataset_id"], state="failed")
    foreign = make_run(db, other_dataset)
    resized = make_run(db, seeded["dataset_id"], image_size=32)
    cases = [
        ([ok, 999999], 404, "Run 999999 not found."),
        (
            [ok, failed],
            422,
            f"Run {failed} has not finished successfully (failed); "
            "only finished runs can be evaluated.",
        ),
        (
            [ok, foreign],
            422,
            "The runs were trained on different datasets; choose runs of one dataset, "
            "so that they are scored on the same test images.",
        ),
        (
            [ok, resized],
            422,
            "The runs use different image sizes; choose runs that see the same images.",
        ),
    ]
    for run_ids, status, detail in cases:
        r = client.post(URL, headers=auth["researcher"], json={"run_ids": run_ids})
        assert (r.status_code, r.json()["detail"]) == (status, detail), run_ids
    assert queued == [] and db.query(InequalityEvaluation).count() == 0


def test_lookups_that_find_nothing(client, seeded, auth):
    r = client.get(f"{URL}/999999", headers=auth["researcher"])
    assert (r.status_code, r.json()["detail"]) == (404, "Evaluation not found.")
    r = client.get(URL, headers=auth["researcher"], params={"run_ids": "1,x"})
    assert (r.status_code, r.json()["detail"]) == (
        422,
        "run_ids must be a comma-separated list of run ids.",
    )


def test_an_unreachable_queue_fails_the_evaluation_and_says_so(
    client, seeded, auth, db, monkeypatch
):
    from backend.models import InequalityEvaluation
    from backend.services import inequality

    def down(*_args):
        raise ConnectionError("broker down")

    monkeypatch.setattr(inequality, "enqueue", down)
    run = make_run(db, seeded["dataset_id"])
    r = client.post(URL, headers=auth["researcher"], json={"run_ids": [run]})
    assert (r.status_code, r.json()["detail"]) == (
        503,
        "The task queue could not be reached; try again later.",
    )
    (evaluation,) = db.query(InequalityEvaluation).all()
    assert evaluation.state == "failed" and "ConnectionError" in evaluation.error
