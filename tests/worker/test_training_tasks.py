"""The training task with a REAL Celery worker subprocess on the test Redis and PostgreSQL
(not eager mode): a tiny run goes queued -> running -> succeeded with its epochs stored;
cancel stops a running run within a batch; a worker SIGKILLed mid-run and restarted resumes
the run and ends with the same metrics as an uninterrupted run of the same seed.

The worker consumes a queue of its own (TRAINING_QUEUE) so that other tests' messages on the
shared Redis never reach it.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from sqlalchemy import select

from tests.conftest import ROOT

QUEUE = f"training-test-{uuid.uuid4().hex[:8]}"
NODE = "trainer@runs-test"
TINY = {
    "model": "small_cnn",
    "epochs": 3,
    "batch_size": 16,
    "lr": 0.05,
    "steps": 3,
    "eps": 8 / 255,
    "alpha": 4 / 255,
    "eval_eps": [2 / 255, 8 / 255],
    "eval_subset": 16,
    "eval_steps": 3,
    "schedule": "none",
    "autoattack_n": 0,  # these tests are about the worker; AutoAttack has its own tests
}


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def tiny_dataset_zip(per_class: int = 40, size: int = 12, seed: int = 0) -> bytes:
    """Two learnable classes of noisy 12x12 images: a bright square top-left or bottom-right."""
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for label, name in enumerate(("left", "right")):
            for i in range(per_class):
                a = rng.integers(0, 90, (size, size, 3), dtype=np.uint8)
                h = size // 2
                if label == 0:
                    a[:h, :h] += 150
                else:
                    a[h:, h:] += 150
                zf.writestr(f"{name}/{i}.png", _png(a))
    return buf.getvalue()


class Worker:
    """One `celery worker` subprocess (solo pool: killing it kills the training)."""

    def __init__(
        self,
        log_dir: Path,
        queue: str = QUEUE,
        node: str = NODE,
        env: dict[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self.queue, self.node, self.env = queue, node, env or {}
        self.proc: subprocess.Popen | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        env = dict(
            os.environ,
            TRAINING_QUEUE=self.queue,
            OMP_NUM_THREADS="1",
            MKL_NUM_THREADS="1",
            **self.env,
        )
        log = open(self.log_dir / f"worker-{self.starts}.log", "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "worker.celery_app",
                "worker",
                "-Q",
                f"{self.queue},default",
                "-c",
                "1",
                "--pool=solo",
                "-n",
                self.node,
                "--without-gossip",
                "--without-mingle",
                "--without-heartbeat",
                "-l",
                "info",
            ],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("*.log"))
        )


@pytest.fixture(scope="module")
def worker(pg_database, tmp_path_factory):
    w = Worker(tmp_path_factory.mktemp("worker-logs"))
    w.start()
    yield w
    w.stop()


def send(name: str, *args: object) -> str:
    from backend.core.queue import get_celery

    return str(get_celery().send_task(name, args=list(args), queue=QUEUE).id)


@pytest.fixture()
def dataset_id(db) -> int:
    from backend.core.storage import get_storage
    from backend.services.datasets import import_dataset, zip_entries

    ds = import_dataset(
        db, get_storage(), zip_entries(tiny_dataset_zip()), name="tiny-train", test_fraction=0.25
    )
    return ds.id


def launch(db, dataset_id: int, **fields) -> int:
    from backend.services.runs.launch import create_runs

    (run,) = create_runs(db, None, {"dataset_id": dataset_id, **TINY, **fields}, enqueue_fn=send)
    return run.id


def read(run_id: int):
    from backend.db import get_sessionmaker
    from backend.models import TrainingRun

    with get_sessionmaker()() as s:
        run = s.get(TrainingRun, run_id)
        s.expunge(run)
        return run


def epochs_of(run_id: int) -> list[dict]:
    from backend.db import get_sessionmaker
    from backend.models import RunEpoch

    with get_sessionmaker()() as s:
        rows = s.scalars(select(RunEpoch).where(RunEpoch.run_id == run_id).order_by(RunEpoch.epoch))
        return [r.metrics for r in rows]


def wait_for(run_id: int, ok, worker: Worker, timeout: float = 240, seen: list | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = read(run_id)
        if seen is not None and (not seen or seen[-1] != run.state):
            seen.append(run.state)
        if ok(run):
            return run
        if run.state == "failed":
            pytest.fail(f"run failed: {run.error}\n{run.log_tail}")
        time.sleep(0.1)
    pytest.fail(f"timed out; run state {read(run_id).state}\nworker log:\n{worker.log()}")


def test_tiny_run_succeeds_with_epochs_stored(worker, db, dataset_id):
    from backend.core.storage import get_storage

    t0 = time.monotonic()
    run_id = launch(db, dataset_id, seed=1)
    states: list[str] = []
    run = wait_for(run_id, lambda r: r.state == "succeeded", worker, seen=states)
    elapsed = time.monotonic() - t0
    assert states[0] == "queued" and "running" in states and states[-1] == "succeeded", states
    epochs = epochs_of(run_id)
    assert [e["epoch"] for e in epochs] == [1, 2, 3]
    for e in epochs:
        assert {"train_loss", "clean_accuracy", "robust_accuracy"} <= set(e)
        assert (
            0 <= e["clean_accuracy"] <= 1
            and 0 <= e["robust_accuracy"] <= e["clean_accuracy"] + 1e-9
        )
    assert run.progress == 1.0 and run.current_epoch == 3 and run.attempts == 1
    final = run.final_metrics["final"]
    assert set(final["pgd_accuracy"]) == {f"{2 / 255:.6g}", f"{8 / 255:.6g}"}
    assert final["clean_accuracy"] > 0.6, final  # the task is learnable in three epochs
    rep = run.reproducibility
    assert rep["seed"] == 1 and rep["device"] == "cpu"
    assert {"python", "torch", "torchvision", "numpy"} <= set(rep["packages"])
    assert rep["dataset_content_hash"] and rep["code_version"]
    storage = get_storage()
    assert storage.exists(f"{run.checkpoint_key}/final.pt")
    metrics = json.loads(storage.get_bytes(f"{run.checkpoint_key}/metrics.json"))
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3]
    assert storage.exists(f"{run.checkpoint_key}/salience/salience.json")
    assert "epoch 3/3" in run.log_tail
    print(f"\ntiny run (3 epochs, 60 images 12x12, small_cnn, PGD-3): {elapsed:.1f} s end to end")
    # a second delivery of the same finished run does nothing
    from backend.core.queue import TRAIN_TASK

    send(TRAIN_TASK, run_id, run.celery_task_id)
    time.sleep(2)
    again = read(run_id)
    assert again.state == "succeeded" and again.attempts == 1


def test_cancel_stops_a_running_run(worker, db, dataset_id):
    from backend.models import TrainingRun
    from backend.services.run_lifecycle import cancel_run

    run_id = launch(db, dataset_id, epochs=400, seed=2)
    wait_for(run_id, lambda r: r.state == "running" and r.current_epoch >= 1, worker)
    t0 = time.monotonic()
    db.expire_all()
    cancel_run(db, db.get(TrainingRun, run_id))
    run = wait_for(run_id, lambda r: r.state == "cancelled", worker, timeout=60)
    latency = time.monotonic() - t0
    assert run.current_epoch < 400 and run.finished_at is not None
    print(f"\ncancel -> cancelled in {latency:.2f} s")
    assert latency < 10


def test_killed_worker_resumes_with_the_same_metrics(worker, db, dataset_id):
    epochs = 6
    run_id = launch(db, dataset_id, epochs=epochs, seed=3)
    wait_for(run_id, lambda r: r.state == "running" and r.current_epoch >= 2, worker)
    worker.kill()
    killed_at = read(run_id)
    assert killed_at.state == "running" and killed_at.current_epoch < epochs, "killed too late"
    t0 = time.monotonic()
    worker.start()  # its start-up check finds the run it owned and queues it again
    resumed = wait_for(run_id, lambda r: r.state == "succeeded", worker)
    print(
        f"\nkilled after epoch {killed_at.current_epoch}; "
        f"restart -> succeeded in {time.monotonic() - t0:.1f} s"
    )
    assert resumed.attempts == 2
    assert (
        f"resuming after epoch {killed_at.current_epoch}" in resumed.log_tail
        or "resuming" in resumed.log_tail
    )

    reference_id = launch(db, dataset_id, epochs=epochs, seed=3)
    reference = wait_for(reference_id, lambda r: r.state == "succeeded", worker)
    assert reference.attempts == 1
    got, want = epochs_of(run_id), epochs_of(reference_id)
    assert [e["epoch"] for e in got] == list(range(1, epochs + 1))
    for a, b in zip(got, want, strict=True):
        for key in ("train_loss", "train_accuracy", "clean_accuracy", "robust_accuracy", "lr"):
            assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-9), (a, b)
    fa, fb = resumed.final_metrics["final"], reference.final_metrics["final"]
    assert fa["clean_accuracy"] == pytest.approx(fb["clean_accuracy"])
    assert fa["pgd_accuracy"] == pytest.approx(fb["pgd_accuracy"])


def test_mask_set_automatic_masks_and_teacher_reach_the_library(worker, db, dataset_id):
    """The product's flow through the real worker: human masks frozen into a mask set train
    SIP-AT and fast SIP-AT; a finished standard run is IGD's teacher and the source of
    SIP-AT's automatic maps. The run records say what each one used."""
    from backend.core.security import hash_password
    from backend.models import Dataset, Image, User
    from backend.services.consensus import freeze_mask_set
    from backend.services.masks import save_mask

    annotator = User(
        username=f"painter-{uuid.uuid4().hex[:6]}",
        password_hash=hash_password("painter-pass"),
        role="annotator",
    )
    db.add(annotator)
    db.commit()
    train_images = db.scalars(
        select(Image)
        .where(Image.dataset_id == dataset_id, Image.split == "train")
        .order_by(Image.id)
    ).all()
    marked = train_images[:10]
    for image in marked:
        mask = np.zeros((image.height, image.width), bool)
        mask[: image.height // 2, : image.width // 2] = True
        save_mask(
            db,
            annotator,
            image,
            save_id=uuid.uuid4().hex,
            mask=mask,
            active_ms=1500,
            check_queue=False,
            status_after="accepted",
        )
    mask_set, _ = freeze_mask_set(
        db,
        db.get(Dataset, dataset_id),
        name="quarter",
        statuses=["accepted"],
        min_annotators=1,
        min_agreement=None,
        created_by=None,
    )

    teacher = launch(db, dataset_id, method="standard", seed=4)
    wait_for(teacher, lambda r: r.state == "succeeded", worker)
    runs = {
        "sip_at": launch(db, dataset_id, method="sip_at", mask_set_id=mask_set.id, seed=4),
        "fast_sip_at": launch(
            db, dataset_id, method="fast_sip_at", mask_set_id=mask_set.id, seed=4
        ),
        "sip_at_auto": launch(
            db, dataset_id, method="sip_at", mask_source="gradcam", auto_mask_run_id=teacher, seed=4
        ),
        "igd": launch(db, dataset_id, method="igd", igd_teacher_run_id=teacher, seed=4),
    }
    done = {k: wait_for(v, lambda r: r.state == "succeeded", worker) for k, v in runs.items()}

    for name in ("sip_at", "fast_sip_at"):
        rep = done[name].reproducibility
        assert rep["mask_set_id"] == mask_set.id and rep["mask_set_hash"] == mask_set.hash
        # exactly the ten masked training images carry a map; the others train with plain PGD
        assert rep["train_images_with_map"] == len(marked), rep
        assert done[name].final_metrics["train_images_with_map"] == len(marked)
    assert done["fast_sip_at"].final_metrics["method"]["fast_attack"] == "n_fgsm"
    auto = done["sip_at_auto"]
    assert auto.reproducibility["auto_mask_run_id"] == teacher
    assert auto.reproducibility["mask_source"] == "gradcam"
    assert auto.reproducibility["train_images_with_map"] == len(train_images)
    igd = done["igd"]
    assert igd.reproducibility["igd_teacher_run_id"] == teacher
    assert igd.final_metrics["method"]["igd_teacher"].endswith("final.pt")
    for run in done.values():
        assert 0 <= run.final_metrics["final"]["clean_accuracy"] <= 1
        assert len(epochs_of(run.id)) == TINY["epochs"]
