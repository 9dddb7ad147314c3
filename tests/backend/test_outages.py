"""Outages: while the database cannot be reached every request is answered 503 with
Retry-After (not 500); a launch while the broker (Redis) is down answers 503 with a sentence
within a few seconds; a client that hangs up in the middle of its body costs one log line,
never a traceback."""

from __future__ import annotations

import logging
import time

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from sqlalchemy.orm import sessionmaker

from backend.core import queue
from backend.core.config import get_settings
from backend.main import app
from backend.models import TrainingRun
from tests.conftest import http_scope, run_in_own_loop

SMALL = {"model": "small_cnn", "epochs": 2, "batch_size": 8, "eval_subset": 8, "eval_steps": 2}


@pytest.fixture()
def database_down(monkeypatch):
    """Every new session connects to a port nobody listens on."""
    from backend import db as db_module
    from backend import deps, middleware

    dead = sa.create_engine(
        "postgresql+psycopg://postgres@127.0.0.1:1/none", connect_args={"connect_timeout": 1}
    )
    maker = sessionmaker(bind=dead)
    for module in (db_module, deps, middleware):
        monkeypatch.setattr(module, "get_sessionmaker", lambda: maker)
    yield
    dead.dispose()


def test_an_unreachable_database_is_a_503_with_retry_after(auth, database_down):
    with TestClient(app, raise_server_exceptions=False) as c:
        for method, path in (("GET", "/api/auth/me"), ("POST", "/api/datasets/1/masks/import")):
            r = c.request(method, path, headers=auth["researcher"])
            assert r.status_code == 503, (path, r.status_code, r.text)
            assert r.headers["retry-after"].isdigit(), r.headers
            assert r.json()["detail"] == (
                "The database cannot be reached at the moment; try again in a few seconds."
            )


def test_a_launch_while_the_broker_is_down_is_a_quick_503(client, auth, seeded, db, monkeypatch):
    down = {
        "celery_broker_url": "redis://127.0.0.1:1/0",
        "celery_result_backend": "redis://127.0.0.1:1/1",
    }
    for name, url in down.items():
        monkeypatch.setattr(get_settings(), name, url)
        monkeypatch.setenv(name.upper(), url)  # Celery reads these variables itself
    queue.get_celery.cache_clear()
    try:
        t0 = time.monotonic()
        r = client.post(
            "/api/runs",
            headers=auth["researcher"],
            json={"dataset_id": seeded["dataset_id"], **SMALL, "seeds": [1, 2]},
        )
        took = time.monotonic() - t0
    finally:
        queue.get_celery.cache_clear()
    assert r.status_code == 503, r.text
    assert r.json()["detail"] == (
        "The task queue could not be reached, so the run was kept as failed; "
        "retry it when the queue is back."
    )
    assert took < 5, took
    states = [run.state for run in db.query(TrainingRun).all()]
    assert states == ["failed", "failed"]


def _hang_up(method: str, path: str, headers: dict[str, str], first: bytes) -> None:
    """Send the first bytes of a 400-byte body straight to the app, then hang up."""
    messages = iter(
        [
            {"type": "http.request", "body": first, "more_body": True},
            {"type": "http.disconnect"},
        ]
    )

    async def receive():
        try:
            return next(messages)
        except StopIteration:
            return {"type": "http.disconnect"}

    async def send(_message):
        pass

    scope = http_scope(
        method,
        path,
        [
            (b"content-length", b"400"),
            *((k.lower().encode(), v.encode()) for k, v in headers.items()),
        ],
    )
    run_in_own_loop(app, scope, receive, send)


def test_a_client_that_hangs_up_mid_body_costs_one_line(client, auth, seeded, caplog):
    """A body cut off after its first bytes, to a route FastAPI parses, to the mask save (which
    reads its own body) and to an upload: the app returns without raising and logs one line
    each, without a traceback."""
    caplog.set_level(logging.INFO)
    image_id = seeded["image_ids"][0]
    json_type = {"content-type": "application/json"}
    json_start = b'{"username": "a'
    form_start = b'--x\r\nContent-Disposition: form-data; name="name"\r\n\r\nab'
    sends = [
        ("POST", "/api/auth/login", json_type, json_start),
        (
            "PUT",
            f"/api/annotate/images/{image_id}/mask",
            {**json_type, **auth["annotator"]},
            json_start,
        ),
        (
            "POST",
            "/api/datasets/import",
            {"content-type": "multipart/form-data; boundary=x", **auth["researcher"]},
            form_start,
        ),
    ]
    for method, path, headers, first in sends:
        caplog.clear()
        _hang_up(method, path, headers, first)
        lines = [r for r in caplog.records if "hung up" in r.getMessage()]
        assert len(lines) == 1, (path, [r.getMessage() for r in caplog.records])
        assert not any(r.exc_info for r in caplog.records), f"a traceback was logged ({path})"
