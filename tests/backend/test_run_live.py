"""The live curves' backend on PostgreSQL: per-batch points stored by the worker's side of the
lifecycle (one row per step, overwritten on a resumed run), served in the run's detail with
the time left from the measured batch rate, and pushed as server-sent events by the real
server (uvicorn) until the run finishes, without a transaction left open between polls and
ending when the client goes away."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy import select

from backend.models import RunBatch, TrainingRun, utcnow
from backend.services import run_lifecycle as lifecycle
from backend.services.runs.launch import create_runs
from tests.conftest import run_in_own_loop


def _no_queue(*_: object) -> str:
    return "not-sent"  # no worker here: the tests play the worker's side themselves


def running_run(db, dataset_id: int, epochs: int = 2) -> int:
    (run,) = create_runs(
        db,
        None,
        {"dataset_id": dataset_id, "model": "small_cnn", "epochs": epochs, "batch_size": 8},
        enqueue_fn=_no_queue,
    )
    run.state, run.started_at, run.heartbeat_at = "running", utcnow(), utcnow()
    db.commit()
    return run.id


def point(step: int, batches: int = 5, loss: float = 1.0, **extra) -> dict:
    return {
        "step": step,
        "epoch": (step - 1) // batches + 1,
        "batch": (step - 1) % batches + 1,
        "batches": batches,
        "loss": loss,
        "accuracy": 0.5,
        "images": 8,
        "images_per_s": 100.0,
        "device": "cpu (test)",
        "memory_bytes": 123456789,
        **extra,
    }


def report(run_id: int, *points: dict) -> None:
    from backend.db import get_sessionmaker

    for p in points:
        with get_sessionmaker()() as s:
            lifecycle.report_batch(s, run_id, p)


def test_batch_points_detail_progress_system_and_time_left(client, seeded, auth, db):
    run_id = running_run(db, seeded["dataset_id"], epochs=4)
    report(run_id, point(5, batches=10), point(15, batches=10))
    report(run_id, point(5, batches=10, loss=0.25))  # a resumed run reports step 5 again
    db.expire_all()
    rows = db.scalars(select(RunBatch).where(RunBatch.run_id == run_id)).all()
    assert sorted((r.step, r.loss) for r in rows) == [(5, 0.25), (15, 1.0)]
    # 10 batches in 10 s: 1 batch/s; 40 - 15 = 25 batches left, the last point 1 s ago
    now = utcnow()
    for r in rows:
        r.created_at = now - timedelta(seconds=11 if r.step == 5 else 1)
    run = db.get(TrainingRun, run_id)
    run.started_at = now - timedelta(seconds=30)
    db.commit()
    d = client.get(f"/api/runs/{run_id}", headers=auth["researcher"]).json()
    assert [(b["step"], b["epoch"], b["loss"]) for b in d["batches"]] == [
        (5, 1, 0.25),
        (15, 2, 1.0),
    ]
    assert d["batches_per_epoch"] == 10
    assert d["progress"] == pytest.approx(5 / 40)  # the resumed run is back at step 5
    assert d["system"] == {"device": "cpu (test)", "memory_bytes": 123456789, "images_per_s": 100.0}
    assert 22 <= d["time_left_s"] <= 25, d["time_left_s"]


def test_time_left_needs_two_points_since_the_start(client, seeded, auth, db):
    run_id = running_run(db, seeded["dataset_id"], epochs=4)
    report(run_id, point(3))
    d = client.get(f"/api/runs/{run_id}", headers=auth["researcher"]).json()
    assert d["time_left_s"] is None  # one point and no finished epoch: no rate yet
    assert len(d["batches"]) == 1


def test_an_unknown_run_or_a_bad_cursor_has_no_stream(client, seeded, auth, db):
    r = client.get("/api/runs/999999/events", headers=auth["researcher"])
    assert r.status_code == 404 and r.json()["detail"] == "Run not found."
    run_id = running_run(db, seeded["dataset_id"])
    r = client.get(f"/api/runs/{run_id}/events?after_step=-1", headers=auth["researcher"])
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "after_step"


class EventReader:
    """Reads server-sent events off an httpx stream, one at a time."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()

    def next(self) -> tuple[str, object]:
        name, data = "", ""
        for line in self.lines:
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data += line[6:]
            elif line == "" and name:
                return name, json.loads(data)
        raise EOFError("the stream ended")

    def until(self, name: str) -> list[tuple[str, object]]:
        seen = []
        while True:
            event = self.next()
            seen.append(event)
            if event[0] == name:
                return seen


def idle_in_transaction() -> int:
    """Connections of the test database, other than this one, that sit in a transaction."""
    from backend.db import get_engine

    with get_engine().connect() as conn:
        return conn.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND state LIKE 'idle in transaction%'"
            )
        ).scalar_one()


def test_the_stream_pushes_points_epochs_and_the_end(live_server):
    from backend.db import get_sessionmaker
    from tests.conftest import seed_live_world

    world = seed_live_world(live_server, "live")
    headers = world["headers"]
    with get_sessionmaker()() as db:
        run_id = running_run(db, world["dataset"]["id"], epochs=2)
    report(run_id, point(1), point(2), point(3))
    url = f"{live_server}/api/runs/{run_id}/events"
    assert httpx.get(url).status_code == 401
    assert httpx.get(url, headers=headers["annotator"]).status_code == 403
    # asked for JSON, the same events as they stand now
    now = httpx.get(url, headers=headers["researcher"], params={"after_step": 1}).json()
    assert now["finished"] is False
    assert [p["step"] for e in now["events"] if e["event"] == "batch" for p in e["data"]] == [2, 3]
    stream_headers = {**headers["researcher"], "Accept": "text/event-stream"}
    with httpx.stream("GET", url, headers=stream_headers, timeout=20) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        events = EventReader(r)
        first = dict(events.until("batch"))
        assert first["run"]["state"] == "running"
        assert first["run"]["progress"] == pytest.approx(3 / 10)
        assert first["run"]["batches_per_epoch"] == 5
        assert [p["step"] for p in first["batch"]] == [1, 2, 3]
        # between polls the server holds no transaction open
        time.sleep(1.2)
        assert idle_in_transaction() == 0
        # what the worker stores next arrives without asking
        report(run_id, point(4, loss=0.5), point(5, loss=0.4))
        with get_sessionmaker()() as db:
            lifecycle.report_epoch(db, run_id, 1, 2, {"train_loss": 0.45}, "epoch 1 done")
        got: dict = {}
        while "batch" not in got or "epoch" not in got:
            name, data = events.next()
            got.setdefault(name, data)
        assert [(p["step"], p["loss"]) for p in got["batch"]] == [(4, 0.5), (5, 0.4)]
        assert [(e["epoch"], e["metrics"]["train_loss"]) for e in got["epoch"]] == [(1, 0.45)]
        with get_sessionmaker()() as db:
            assert lifecycle.finish(db, run_id, "succeeded", "all done", progress=1.0)
        rest = dict(events.until("end"))
        assert rest["end"] == {"state": "succeeded"}
        with pytest.raises(EOFError):
            events.next()  # the server ended the stream
    # a stream opened later sends only what comes after its cursors, then ends at once
    with httpx.stream(
        "GET", url, params={"after_step": 4, "after_epoch": 1}, headers=stream_headers
    ) as r:
        late = dict(EventReader(r).until("end"))
    assert [p["step"] for p in late["batch"]] == [5]
    assert "epoch" not in late
    assert late["run"]["state"] == "succeeded" and late["run"]["time_left_s"] is None


def test_the_stream_ends_when_the_client_disconnects(client, seeded, auth, db):
    """The real app as an ASGI callable: a client that goes away after the first event
    ends the stream of a run that is still running."""
    from backend.main import create_app

    run_id = running_run(db, seeded["dataset_id"])
    report(run_id, point(1))
    app = create_app()
    token = auth["researcher"]["Authorization"].encode()
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": f"/api/runs/{run_id}/events",
        "raw_path": f"/api/runs/{run_id}/events".encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"test"),
            (b"authorization", token),
            (b"accept", b"text/event-stream"),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("test", 80),
    }
    sent: list[dict] = []
    first_body = asyncio.Event()
    requested = False

    async def receive() -> dict:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await first_body.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and message.get("body"):
            first_body.set()

    async def main() -> None:
        await asyncio.wait_for(app(scope, receive, send), timeout=10)

    run_in_own_loop(main)
    assert sent[0]["status"] == 200
    assert b"event: run" in b"".join(m.get("body", b"") for m in sent[1:])
    db.expire_all()
    assert db.get(TrainingRun, run_id).state == "running"  # it ended because the client left
