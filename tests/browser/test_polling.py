"""A polling page survives failed requests: it says so, retries with backoff, and resumes
when the server answers again (frontend/lib/poll.js; here the run page of a queued run,
whose live stream is refused so that it polls)."""

from __future__ import annotations

import time

import httpx
import pytest
from sqlalchemy import update

from tests.browser.conftest import sign_in
from tests.conftest import seed_live_world
from tests.worker.test_training_tasks import TINY

pytestmark = pytest.mark.browser


def test_the_run_page_shows_a_failed_refresh_and_resumes(page, live_server):
    from backend.db import get_sessionmaker
    from backend.models import TrainingRun

    world = seed_live_world(live_server, "polled")
    researcher = world["headers"]["researcher"]
    r = httpx.post(
        f"{live_server}/api/runs",
        headers=researcher,
        json={"name": "watched", "dataset_id": world["dataset"]["id"], **TINY},
    )
    assert r.status_code == 201, r.text
    run_id = r.json()["data"][0]["id"]
    try:
        sign_in(page, "researcher")
        # the live stream refused: the page falls back to polling, which is what is tested
        page.route(f"**/api/runs/{run_id}/events**", lambda route: route.abort())
        page.goto(f"/#/runs/{run_id}")
        page.locator(".run-head").filter(has_text="queued").wait_for()
        calls: list[float] = []

        def refuse(route) -> None:
            calls.append(time.monotonic())
            route.fulfill(status=503, json={"detail": "The server is restarting."})

        page.route(f"**/api/runs/{run_id}", refuse)
        error = page.locator(".action-error")
        error.filter(has_text="The server is restarting. (retrying)").wait_for()
        # the server answers again, and the run has moved on meanwhile
        with get_sessionmaker()() as db:
            db.execute(update(TrainingRun).where(TrainingRun.id == run_id).values(state="running"))
            db.commit()
        page.unroute(f"**/api/runs/{run_id}")
        page.locator(".run-head").filter(has_text="running").wait_for(timeout=20000)
        assert error.inner_text() == ""
        # one failed call, retried after twice the interval (backoff), not hammered
        assert len(calls) == 1, calls
    finally:
        with get_sessionmaker()() as db:
            db.execute(
                update(TrainingRun).where(TrainingRun.id == run_id).values(state="cancelled")
            )
            db.commit()
