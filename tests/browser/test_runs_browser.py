"""A researcher launches a run from the form, watches it progress live and sees it succeed with
its curves drawn and its final evaluation (AutoAttack with its per-attack breakdown, PGD, the
gradient-masking checks) on its page and in the runs table: the real app (live_server), a real
Celery worker on Redis and PostgreSQL."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from playwright.sync_api import expect

import tests.worker.test_training_tasks as tt
from tests.conftest import ROOT, free_port

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


def quadrant_dataset_zip(per_class: int = 60, size: int = 16, seed: int = 0) -> bytes:
    """Four learnable classes of noisy images, a bright square in one quadrant each: the
    original AutoAttack's targeted attacks (APGD-T's DLR loss) need at least four classes."""
    rng = np.random.default_rng(seed)
    h = size // 2
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, (r, c) in {"tl": (0, 0), "tr": (0, h), "bl": (h, 0), "br": (h, h)}.items():
            for i in range(per_class):
                a = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                a[r : r + h, c : c + h] += 150
                zf.writestr(f"{name}/{i}.png", tt._png(a))
    return buf.getvalue()


@pytest.fixture()
def train_dataset(seeded, db):
    from backend.core.storage import get_storage
    from backend.services.datasets import import_dataset, zip_entries

    ds = import_dataset(db, get_storage(), zip_entries(quadrant_dataset_zip()),
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
                        "eval_subset": "32", "eval_steps": "5", "eval_restarts": "2",
                        "epoch_eval_steps": "3", "autoattack_n": "16"}.items():  # fmt: skip
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
    evaluation = {k: stored[k] for k in ("autoattack_n", "eval_restarts", "epoch_eval_steps")}
    assert evaluation == {"autoattack_n": 16, "eval_restarts": 2, "epoch_eval_steps": 3}
    seen: set[str] = set()
    bar: list[tuple[str, str, int]] = []  # (state, phase, percent) as the page showed them
    texts: list[str] = []
    deadline = time.monotonic() + 300
    # one snapshot of the page per sample: read one by one, the state could be a running
    # run's and the bar the succeeded one's (seen in a loaded run)
    # (null while the page is drawing it)
    snapshot = """() => {
      const bar = document.querySelector('.run-head .run-progress');
      const state = document.querySelector('.run-head .state');
      const text = document.querySelector('.progress-text');
      if (!bar || !state || !text) return null;
      return [state.dataset.state, bar.dataset.phase, Number(bar.getAttribute('aria-valuenow')),
              text.innerText];
    }"""
    while time.monotonic() < deadline:
        shown = page.evaluate(snapshot)
        if shown is None:
            time.sleep(0.1)
            continue
        state, phase, percent, text = shown
        seen.add(text)
        texts.append(text)
        bar.append((state, phase or "", int(percent)))
        if state == "succeeded":
            break
        assert state in ("queued", "running"), page.locator(".run-head").inner_text()
        time.sleep(0.3)
    else:
        pytest.fail(f"the run did not finish; worker log:\n{training_worker.log()}")
    check_progress_to_the_end(bar, seen)
    db.expire_all()
    run = db.get(TrainingRun, run_id)
    took = (run.finished_at - run.started_at).total_seconds()
    first = next((t for t in texts if "left" in t), None)
    print(f"\ntraining {took - run.work['evaluation_seconds']:.0f} s, final evaluation "
          f"{run.work['evaluation_seconds']:.0f} s; first promise: {first!r}")  # fmt: skip
    # the real worker said it listens, on its queues, and is idle again
    (listening,) = page.request.get("/api/queue").json()["workers"]
    assert listening["hostname"] == tt.NODE and tt.QUEUE in listening["queues"], listening
    assert listening["doing"] == [] and listening["gpus"] == []
    ends = ("epoch 0 ", "epoch 8 ")
    intermediate = {s for s in seen if s.startswith("epoch ") and not s.startswith(ends)}
    assert intermediate, f"no live progress seen between epochs: {seen}"
    # the curves: loss, and clean + robust accuracy, one point per epoch, under the
    # per-batch training loss and accuracy (drawn as lines without point markers)
    page.wait_for_selector(".chart-acc svg path.lc-line", state="attached")
    assert page.locator(".chart-loss svg path.lc-line:not(.lc-dense)").count() == 1
    assert page.locator(".chart-acc svg path.lc-line:not(.lc-dense)").count() == 2
    assert page.locator(".chart-loss svg path.lc-line.lc-dense").count() == 1
    assert page.locator(".chart-acc svg circle").count() == 16
    assert page.locator(".final-clean").inner_text().endswith("%")
    assert page.locator(".run-downloads a", has_text="final.pt").count() == 1
    page.wait_for_selector(".run-salience .salience-grid img")
    assert "torch" in page.locator(".run-repro").inner_text()
    print(f"\nprogress texts seen live: {sorted(seen)}")
    check_final_evaluation(page, run_id)
    check_masking_warning(page, run_id, db)


def check_progress_to_the_end(bar: list[tuple[str, str, int]], seen: set[str]) -> None:
    """Issue 29: the bar counts the final evaluation. It never goes back, is short of 100 %
    while the run trains and evaluates (the evaluation named with its stage and images, its
    time left promised), and full only once the run has succeeded."""
    percents = [p for _, _, p in bar]
    assert percents == sorted(percents), bar
    running = [(phase, p) for state, phase, p in bar if state == "running"]
    assert running and all(p < 100 for _, p in running), bar
    evaluating = [p for phase, p in running if phase == "evaluating"]
    assert evaluating, f"the evaluation was never shown as a phase: {bar}"
    trained = [p for phase, p in running if phase == "training"]
    assert not trained or max(trained) <= min(evaluating)
    assert bar[-1][0] == "succeeded" and bar[-1][2] == 100
    stages = [t for t in seen if "final evaluation: " in t]
    assert any(re.search(r"final evaluation: .+ \((\d+ /|on) \d+ images, step \d+ of \d+\)", t)
               for t in stages), stages  # fmt: skip
    assert any("AutoAttack" in t for t in stages), stages
    training = [t for t in seen if "training · about" in t]
    assert all("(the final evaluation included)" in t for t in training), training


def check_final_evaluation(page, run_id: int) -> None:
    """AutoAttack is the headline with its breakdown, PGD is named with its settings, every
    gradient-masking check is listed, and the runs table has the AutoAttack column."""
    # the per-epoch curve is labelled as the cheap check it is
    assert "robust (PGD-3, 1 restart, per epoch)" in page.locator(".chart-acc svg").text_content()
    headline = page.locator(".robust-headline").inner_text()
    assert headline.startswith("AutoAttack (standard, L∞, ε 8/255, 16 images, pyautoattack ")
    assert page.locator(".final-autoattack").inner_text().endswith("%")
    heads = page.locator(".aa-breakdown th").all_inner_texts()
    # AutoAttack's clean accuracy is on its own images, and says so
    after = ["after APGD-CE", "after APGD-T", "after FAB-T", "after Square"]
    assert heads == ["clean (16 images)", *after]
    assert all(t.endswith("%") for t in page.locator(".aa-breakdown td").all_inner_texts())
    assert "100 iterations" in page.locator(".final-aa").inner_text()
    assert "PGD-5, 2 restarts, α = ε/4, on 16 images" in page.locator(".final-aa").inner_text()
    assert page.locator(".pgd-label").inner_text().startswith("PGD-5, 2 restarts, α = ε/4, on 32")
    assert "127.5/255" in page.locator(".large-eps").inner_text()
    checks = page.locator(".masking-checks tr")
    assert checks.count() == 4, page.locator(".final-masking").inner_text()
    failed = page.locator(".masking-checks tr.failed").count()
    assert page.locator(".masking-warning").count() == (1 if failed else 0)
    page.goto("/#/runs")
    row = page.locator(f"table.runs tr[data-run='{run_id}']")
    assert row.locator("td.col-progress .progress").get_attribute("data-percent") == "100"
    assert "AutoAttack" in page.locator("th[data-col=autoattack]").inner_text()
    assert row.locator("td.col-autoattack").inner_text().split()[-2:] == ["n", "16"]
    assert "PGD-5×2" in row.locator("td.col-pgd").inner_text()
    page.click("th[data-col=autoattack]")  # sorts by it, in the browser
    page.wait_for_selector("th[data-col=autoattack]:has-text('▼')")


def check_masking_warning(page, run_id: int, db) -> None:
    """A run whose final evaluation failed a gradient-masking check is flagged in the table
    and on its page, naming the check."""
    from backend.models import TrainingRun

    db.expire_all()
    run = db.get(TrainingRun, run_id)
    final = dict(run.final_metrics["final"])
    final["gradient_masking"] = {
        "passed": False,
        "failed": ["large_budget_breaks_model"],
        "checks": [
            {"name": "large_budget_breaks_model", "passed": False,
             "detail": "PGD accuracy at eps 127.5/255 is 40.0%"},
        ],
    }  # fmt: skip
    run.final_metrics = {**run.final_metrics, "final": final}
    db.commit()
    page.reload()
    badge = page.locator(f"table.runs tr[data-run='{run_id}'] .masking-badge")
    assert badge.inner_text() == "⚠ gradient masking?"
    assert "a very large ε breaks the model" in badge.get_attribute("title")
    page.goto(f"/#/runs/{run_id}")
    warning = page.locator(".run-head .masking-warning[role=alert]")
    assert "a very large ε breaks the model" in warning.inner_text()
    assert page.locator(".masking-checks tr.failed td").first.inner_text() == "✗ fail"


def test_the_gpus_setting_launches_a_multi_process_run(runs_page, login, train_dataset, db):
    """The form's GPUs field: SyncBatchNorm is offered only above one GPU, an impossible
    count is named beside the field, and a 2-GPU run is stored and shown as such."""
    from backend.models import TrainingRun

    page = runs_page
    login(page, "researcher")
    page.click("nav a[href='#/runs']")
    page.click("button.new-run")
    form = page.locator("form.launch-form")
    form.locator("select[name=dataset_id]").select_option(str(train_dataset))
    form.locator("select[name=model]").select_option("small_cnn")
    gpus = form.locator("input[name=gpus]")
    assert gpus.input_value() == "1" and gpus.get_attribute("max") == "8"
    assert not form.locator("input[name=sync_batchnorm]").is_visible()
    gpus.fill("12")
    form.locator("button[type=submit]").click()
    page.wait_for_selector(".field-error[data-for=gpus]:not(:empty)")
    assert "from 1 to 8" in page.locator(".field-error[data-for=gpus]").inner_text()
    assert db.query(TrainingRun).count() == 0
    gpus.fill("2")
    form.locator("input[name=sync_batchnorm]").check()
    form.locator("input[name=epochs]").fill("1")
    form.locator("button[type=submit]").click()
    page.wait_for_url("**/#/runs/*")
    run_id = int(page.url.rsplit("/", 1)[1])
    db.expire_all()
    stored = db.get(TrainingRun, run_id).config
    assert stored["gpus"] == 2 and stored["sync_batchnorm"] is True
    row = page.locator(".run-config-table tr[data-key=gpus]")
    assert row.inner_text().split("\t")[-1].startswith("2 (one process each")
    assert page.locator(".run-config-table tr[data-key=sync_batchnorm]").count() == 1


def test_a_queued_run_shows_its_place_in_the_queue(runs_page, login, train_dataset, db):
    """Issue 29: a run that waits says where it stands: its position, "waiting for a worker"
    while none listens, and once one does, when it should start and on which worker; the
    queue page lists the waiting runs in order."""
    from backend.models import TrainingRun, WorkerPresence
    from backend.services import workers
    from backend.services.runs.launch import create_runs
    from tests.browser.test_demo_pages import PAGE_PROBLEMS

    db.query(WorkerPresence).delete()  # nobody listens
    db.commit()
    ids = []
    for n in (1, 2):
        form = {"dataset_id": train_dataset, "model": "small_cnn", "epochs": 1,
                "name": f"waiting {n}"}  # fmt: skip
        (run,) = create_runs(db, None, form, enqueue_fn=lambda *_: "not-sent")
        ids.append(run.id)
    page = runs_page
    login(page, "researcher")
    page.goto(f"/#/runs/{ids[1]}")
    place = page.locator(".run-head .run-queue")
    expect(place).to_have_attribute("data-position", "2")
    expect(place).to_contain_text("Position 2 of 2 in the queue")
    expect(place).to_contain_text("waiting for a worker: none is listening")
    # a worker starts listening: the page, following the run, says when it should start
    workers.beat(db, "gpu0@lab", queues=[tt.QUEUE, "default"], gpus=[], leases={}, job=None)
    expect(place).to_contain_text("on worker gpu0@lab", timeout=20000)
    expect(place).to_have_attribute("data-listening", "1")
    page.goto("/#/queue")
    rows = page.locator("table.queue-waiting tbody tr")
    expect(rows).to_have_count(2)
    assert [r.get_attribute("data-position") for r in rows.all()] == ["1", "2"]
    assert [r.get_attribute("data-id") for r in rows.all()] == [str(i) for i in ids]
    assert "gpu0@lab" in page.locator("table.queue-workers").inner_text()
    assert page.evaluate(PAGE_PROBLEMS) == []
    workers.forget(db, "gpu0@lab")
    page.reload()
    expect(page.locator(".queue-no-worker")).to_contain_text("No worker is listening")
    assert "backend.demo --worker-only" in page.locator(".queue-howto").inner_text()
    for run_id in ids:
        db.get(TrainingRun, run_id).state = "cancelled"
    db.commit()
