"""A researcher launches a run from the form, watches it progress live and sees it succeed with
its curves drawn: the real app (live_server), a real Celery worker on Redis and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

import tests.worker.test_training_tasks as tt
from tests.conftest import ROOT, free_port
from tests.worker.test_training_tasks import tiny_dataset_zip

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def runs_server(pg_database):
    """The app in its own uvicorn, sending training tasks to this module's private queue (the
    shared test Redis may have other workers on the default queue)."""
    import httpx

    port = free_port()
    env = dict(os.environ, TRAINING_QUEUE=tt.QUEUE)
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "backend.main:app", "--host", "127.0.0.1", "--port",
         str(port), "--workers", "1", "--log-level", "warning"],
        cwd=ROOT, env=env,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/api/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    yield base
    proc.terminate()
    proc.wait(10)


@pytest.fixture()
def training_worker(runs_server, tmp_path):
    w = tt.Worker(tmp_path)
    w.start()
    yield w
    w.stop()


@pytest.fixture()
def runs_page(chromium, runs_server):
    ctx = chromium.new_context(base_url=runs_server, viewport={"width": 1400, "height": 900})
    ctx.set_default_timeout(15000)
    page = ctx.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    ctx.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


@pytest.fixture()
def train_dataset(seeded, db):
    from backend.core.storage import get_storage
    from backend.services.datasets import import_dataset, zip_entries

    ds = import_dataset(db, get_storage(), zip_entries(tiny_dataset_zip(per_class=120, size=16)),
                        name="squares", test_fraction=0.25)  # fmt: skip
    return ds.id


def test_launch_watch_and_succeed(runs_page, login, training_worker, train_dataset, db):
    from backend.models import TrainingRun

    page = runs_page
    login(page, "researcher")
    page.click("nav a[href='#/runs']")
    loaded = 'table.runs tbody tr[data-run], table.runs tbody td.muted:not(:has-text("Loading"))'
    page.wait_for_selector(loaded)
    page.click("button.new-run")
    form = page.locator("form.launch-form")
    form.locator("select[name=dataset_id]").select_option(str(train_dataset))
    form.locator("select[name=method]").select_option("pgd_at")
    form.locator("select[name=model]").select_option("small_cnn")
    form.locator("input[name=name]").fill("browser run")
    for name, value in {"epochs": "0", "batch_size": "32", "steps": "10", "lr": "0.05",
                        "eval_subset": "32", "eval_steps": "5"}.items():  # fmt: skip
        form.locator(f"input[name={name}]").fill(value)
    form.locator("input[name=eps]").fill("300")  # > 255/255: refused by the server
    form.locator("button[type=submit]").click()
    # every bad field is named beside its input, and nothing was launched
    page.wait_for_selector(".field-error[data-for=epochs]:not(:empty)")
    assert page.locator(".field-error[data-for=eps]").inner_text().strip()
    assert "invalid" in (form.locator("input[name=epochs]").get_attribute("class") or "")
    form.locator("input[name=epochs]").fill("8")
    form.locator("input[name=eps]").fill("8")
    assert form.locator("input[name=augment]").is_checked()
    form.locator("input[name=hflip]").uncheck()  # crops, but no flips (as for digits)
    form.locator("button[type=submit]").click()

    page.wait_for_url("**/#/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    stored = db.get(TrainingRun, run_id).config
    assert stored["augment"] is True and stored["hflip"] is False
    seen: set[str] = set()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        state = page.locator(".run-head .state").get_attribute("data-state")
        seen.add(page.locator(".progress-text").inner_text())
        if state == "succeeded":
            break
        assert state in ("queued", "running"), page.locator(".run-head").inner_text()
        time.sleep(0.3)
    else:
        pytest.fail(f"the run did not finish; worker log:\n{training_worker.log()}")
    ends = ("epoch 0 ", "epoch 8 ")
    intermediate = {s for s in seen if s.startswith("epoch ") and not s.startswith(ends)}
    assert intermediate, f"no live progress seen between epochs: {seen}"
    # the curves: loss, and clean + robust accuracy, one point per epoch
    page.wait_for_selector(".chart-acc svg path.lc-line", state="attached")
    assert page.locator(".chart-loss svg path.lc-line").count() == 1
    assert page.locator(".chart-acc svg path.lc-line").count() == 2
    assert page.locator(".chart-acc svg circle").count() == 16
    assert page.locator(".final-clean").inner_text().endswith("%")
    assert page.locator(".run-downloads a", has_text="final.pt").count() == 1
    page.wait_for_selector(".run-salience .salience-grid img")
    assert "torch" in page.locator(".run-repro").inner_text()
    print(f"\nprogress texts seen live: {sorted(seen)}")
