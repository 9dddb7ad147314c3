"""Live curves: a run's page shows per-batch training points pushed by the server (the event
stream, not the polling) before its first epoch has ended, with the time left, the device,
memory and images/s; the chart answers hover, smoothing, log scale and zoom. The real app
(uvicorn), a real Celery worker on Redis and PostgreSQL."""

from __future__ import annotations

import re
import time

import pytest

import tests.worker.test_training_tasks as tt
from tests.browser.test_runs_browser import (  # noqa: F401 (fixtures)
    quadrant_dataset_zip,
    runs_page,
    runs_server,
    training_worker,
)

pytestmark = pytest.mark.browser

# slow enough per epoch (60 batches of PGD-30 at 32 px: about 10 s on one CPU core) that the
# page must show points from inside the first epoch
SLOW_EPOCH = {
    "method": "pgd_at",
    "model": "small_cnn",
    "epochs": 2,
    "batch_size": 4,
    "steps": 30,
    "lr": 0.05,
    "schedule": "none",
    "eval_subset": 8,
    "eval_steps": 2,
    "epoch_eval_steps": 2,
    "eval_eps": [8 / 255],
    "autoattack_n": 0,
}


@pytest.fixture()
def slow_dataset(seeded, db):
    from backend.core.storage import get_storage
    from backend.services.datasets import import_dataset, zip_entries

    zipped = quadrant_dataset_zip(per_class=80, size=32)
    ds = import_dataset(db, get_storage(), zip_entries(zipped), name="slow", test_fraction=0.25)
    return ds.id


def test_batch_points_arrive_before_the_first_epoch_ends(
    runs_page,  # noqa: F811
    login,
    training_worker,  # noqa: F811
    slow_dataset,
    db,
):
    from backend.models import TrainingRun
    from backend.services.runs.launch import create_runs

    page = runs_page
    login(page, "researcher")
    (run,) = create_runs(db, None, {"dataset_id": slow_dataset, **SLOW_EPOCH}, enqueue_fn=tt.send)
    page.goto(f"/#/runs/{run.id}")
    # a per-batch point is drawn while the page itself still says no epoch has finished,
    # and it came through the event stream
    seen = page.wait_for_function(
        """() => {
          const live = document.querySelector(".run-curves");
          const text = document.querySelector(".progress-text");
          const line = document.querySelector(
            ".chart-loss svg path.lc-line[data-series='train loss (every few batches)']");
          if (!live || !text || !line || Number(live.dataset.batches) < 2) return false;
          return {text: text.textContent, mode: live.dataset.live, d: line.getAttribute("d"),
                  batches: Number(live.dataset.batches)};
        }""",
        timeout=180_000,
    ).json_value()
    assert seen["text"].startswith("epoch 0 / 2"), seen
    assert seen["mode"] == "stream", seen
    assert seen["d"].count("L") >= 1  # a line through at least two points
    # the progress text names the batch and, once two points exist, the time left
    page.wait_for_function(
        "document.querySelector('.progress-text').textContent.includes('left')", timeout=30_000
    )
    head = page.locator(".progress-text").inner_text()
    # while it trains, the time left counts the final evaluation too
    pattern = r"^epoch \d / 2 \(batch \d+ / \d+\) · training · about .+ left"
    pattern += r" \(the final evaluation included\)$"
    assert re.search(pattern, head), head
    system = page.locator(".run-system").inner_text()
    assert "device" in system and "peak memory" in system and "images/s" in system, system
    assert " MiB" in system or " GiB" in system, system
    check_chart_controls(page)
    # cancelled from the page, the stream ends and the page shows it
    page.click(".run-head button[data-act=cancel]")
    page.wait_for_selector(".run-head .state[data-state=cancelled]", timeout=60_000)
    db.expire_all()
    assert db.get(TrainingRun, run.id).state == "cancelled"


def check_chart_controls(page) -> None:
    """Hover shows the values under the pointer; smoothing, log scale and zoom redraw."""
    chart = page.locator(".chart-loss")
    svg = chart.locator("svg")
    box = svg.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.6, box["y"] + box["height"] * 0.55)
    tip = chart.locator(".lc-tip")
    tip.wait_for(state="visible")
    assert "train loss (every few batches):" in tip.inner_text()
    raw = chart.locator("path.lc-raw")
    assert raw.count() == 0
    chart.locator("input.lc-smoothing").fill("0.6")
    assert chart.locator("path.lc-raw").count() == 1  # the raw points stay, faint
    chart.locator("input.lc-log").check()
    ticks = chart.locator("text.lc-tick").all_text_contents()
    assert ticks and all(ticks), "no ticks on the log axis"
    # zoom: drag across the middle of the plot; "Reset zoom" appears and undoes it
    y = box["y"] + box["height"] * 0.5
    page.mouse.move(box["x"] + box["width"] * 0.35, y)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.55, y, steps=4)
    page.mouse.up()
    reset = chart.locator("button.lc-reset")
    reset.wait_for(state="visible")
    reset.click()
    reset.wait_for(state="hidden")
    # the view is remembered for the next run page
    assert page.evaluate("JSON.parse(localStorage.getItem('run.loss.view')).yLog") is True
    chart.locator("input.lc-log").uncheck()
    chart.locator("input.lc-smoothing").fill("0")


def test_the_page_polls_when_the_stream_fails(runs_page, login, seeded, db):  # noqa: F811
    """With the event stream refused, the page falls back to polling and still follows the
    run (here: a run marked running by hand, then finished)."""
    from backend.models import utcnow
    from backend.services.runs.launch import create_runs

    page = runs_page
    login(page, "researcher")
    (run,) = create_runs(
        db, None, {"dataset_id": seeded["dataset_id"], **SLOW_EPOCH}, enqueue_fn=lambda *a: "x"
    )
    run.state, run.started_at = "running", utcnow()
    db.commit()
    page.route("**/events*", lambda route: route.fulfill(status=503, body="no streams today"))
    page.goto(f"/#/runs/{run.id}")
    page.wait_for_selector(".run-curves[data-live=poll]")
    run.state, run.finished_at, run.current_epoch = "failed", utcnow(), 0
    run.error = "stopped by the test"
    db.commit()
    page.wait_for_selector(".run-head .state[data-state=failed]", timeout=10_000)
    time.sleep(0.1)
    assert page.locator(".run-error").inner_text() == "stopped by the test"
