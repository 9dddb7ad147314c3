"""Runs with `gpus` > 1 through a REAL Celery worker: the task leases that many GPUs of its
host and starts the library under torchrun. This host has no CUDA, so the worker is told
it may lease two GPU names (WORKER_GPUS=0,1; the lock files are real) and its runs train
on gloo processes. Checked here:

- a 2-process run succeeds, its epochs and live points reported as a 1-process run's are,
  and ends where the 1-process run of the same seed ends (within the library's tolerance);
- a run waits, queued and saying why in its log, while its GPUs are leased by another
  holder, and starts once they are free; a run asking for more GPUs than the worker may use
  waits for a worker that may;
- cancel stops every rank within seconds, and no rank is left running;
- a rank SIGKILLed mid-run fails the run with a sentence naming the rank (nothing hangs),
  and Retry resumes it from its last checkpoint;
- the worker SIGKILLed mid-run takes torchrun and its ranks with it, and the restarted
  worker resumes the run to the end.
"""

from __future__ import annotations

import os
import signal
import time
import uuid

import pytest

from tests.worker.test_training_tasks import (
    TINY,
    Worker,
    epochs_of,
    read,
    tiny_dataset_zip,
    wait_for,
)
from worker import gpu_leases

pytestmark = pytest.mark.slow

QUEUE = f"training-ranks-{uuid.uuid4().hex[:8]}"
GPUS = ["0", "1"]
# between 1 and 2 processes each rank normalises its own half of a batch and draws its own
# attack starts (tests/sipat/test_distributed.py states the same tolerance)
TOLERANCE = {"train_loss": 0.15, "train_accuracy": 0.12, "clean_accuracy": 0.12}


@pytest.fixture(scope="module")
def lock_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gpu-leases")


@pytest.fixture(scope="module")
def worker(pg_database, tmp_path_factory, lock_dir):
    w = Worker(
        tmp_path_factory.mktemp("ranks-worker-logs"),
        queue=QUEUE,
        node="ranks@runs-test",
        env={"WORKER_GPUS": ",".join(GPUS), "GPU_LOCK_DIR": str(lock_dir), "GPU_WAIT_S": "1"},
    )
    w.start()
    yield w
    w.stop()


def send(name: str, *args: object) -> str:
    from backend.core.queue import get_celery

    return str(get_celery().send_task(name, args=list(args), queue=QUEUE).id)


@pytest.fixture(scope="module")
def dataset_id(pg_database) -> int:
    from backend.core.storage import get_storage
    from backend.db import get_sessionmaker
    from backend.services.datasets import import_dataset, zip_entries

    with get_sessionmaker()() as db:
        ds = import_dataset(
            db,
            get_storage(),
            zip_entries(tiny_dataset_zip()),
            name="tiny-ranks",
            test_fraction=0.25,
        )
        return ds.id


def launch(dataset_id: int, **fields) -> int:
    from backend.db import get_sessionmaker
    from backend.services.runs.launch import create_runs

    with get_sessionmaker()() as db:
        (run,) = create_runs(
            db, None, {"dataset_id": dataset_id, **TINY, **fields}, enqueue_fn=send
        )
        return run.id


def batches_of(run_id: int) -> int:
    from sqlalchemy import func, select

    from backend.db import get_sessionmaker
    from backend.models import RunBatch

    with get_sessionmaker()() as db:
        return db.scalar(select(func.count()).where(RunBatch.run_id == run_id))


def ranks_of(run_id: int) -> dict[int, int]:
    """LOCAL_RANK -> pid of the library's processes training this run (read from /proc)."""
    found = {}
    marker = f"/runs/{run_id}/out".encode()
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as fh:
                cmdline = fh.read()
            if b"worker.sipat" not in cmdline or marker not in cmdline:
                continue
            with open(f"/proc/{entry.name}/environ", "rb") as fh:
                env = dict(item.split(b"=", 1) for item in fh.read().split(b"\0") if b"=" in item)
        except OSError:
            continue
        if b"LOCAL_RANK" in env:
            found[int(env[b"LOCAL_RANK"])] = int(entry.name)
    return found


def wait_until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_a_two_process_run_succeeds_and_ends_where_one_process_ends(worker, dataset_id, lock_dir):
    two_id = launch(dataset_id, gpus=2, seed=11)
    two = wait_for(two_id, lambda r: r.state == "succeeded", worker, timeout=300)
    one_id = launch(dataset_id, gpus=1, seed=11)
    one = wait_for(one_id, lambda r: r.state == "succeeded", worker, timeout=300)

    rep = two.reproducibility
    assert rep["gpus"] == 2 and rep["processes"] == 2 and rep["distributed_backend"] == "gloo"
    assert sorted(rep["gpu_ids"]) == GPUS and rep["device"] == "cpu"
    assert one.reproducibility["gpus"] == 1 and len(one.reproducibility["gpu_ids"]) == 1
    assert "training on 2 processes (torchrun), GPUs 0,1" in two.log_tail
    assert two.progress == 1.0 and two.current_epoch == 3
    assert batches_of(two_id) > 0, "rank 0's progress points reach the run as a 1-process run's do"
    # and so do its work and its final evaluation's progress (issue 29)
    for run in (one, two):
        assert run.work["phase"] == "succeeded" and run.work["evaluation_seconds"] >= 0
    assert two.work["processes"] == 2 and one.work["processes"] == 1
    got, want = epochs_of(two_id), epochs_of(one_id)
    assert [e["epoch"] for e in got] == [e["epoch"] for e in want] == [1, 2, 3]
    for a, b in zip(want, got, strict=True):
        for key, tolerance in TOLERANCE.items():
            assert abs(a[key] - b[key]) <= tolerance, (key, a[key], b[key])
    fa, fb = one.final_metrics["final"], two.final_metrics["final"]
    assert fa["n_test"] == fb["n_test"] and fa["settings"] == fb["settings"]
    assert abs(fa["clean_accuracy"] - fb["clean_accuracy"]) <= TOLERANCE["clean_accuracy"]
    assert gpu_leases.holders(lock_dir, GPUS) == {}  # both leases ended


def test_a_run_waits_queued_while_its_gpus_are_leased(worker, dataset_id, lock_dir):
    held = gpu_leases.acquire(lock_dir, GPUS, 2, holder="another run")
    assert held is not None
    try:
        run_id = launch(dataset_id, gpus=1, seed=12, epochs=1)
        waiting = wait_until(
            lambda: (r := read(run_id)).log_tail and "Waiting for 1 free GPU" in r.log_tail and r,
            "the run to say it waits",
        )
        assert "another run" in waiting.log_tail and waiting.state == "queued"
        time.sleep(3)  # tried again every second, never started, said once
        still = read(run_id)
        assert still.state == "queued" and still.attempts == 0
        assert still.log_tail.count("Waiting for 1 free GPU") == 1
    finally:
        held.release()
    done = wait_for(run_id, lambda r: r.state == "succeeded", worker, timeout=120)
    assert len(done.reproducibility["gpu_ids"]) == 1

    too_many = launch(dataset_id, gpus=3, seed=12, epochs=1)
    waiting = wait_until(
        lambda: (
            (r := read(too_many)).log_tail
            and "waiting for a worker that may use 3" in r.log_tail
            and r
        ),
        "the 3-GPU run to say what it waits for",
    )
    assert waiting.state == "queued" and "may use 2 (0, 1)" in waiting.log_tail
    from backend.db import get_sessionmaker
    from backend.models import TrainingRun
    from backend.services.run_lifecycle import cancel_run

    with get_sessionmaker()() as db:
        cancel_run(db, db.get(TrainingRun, too_many))
    assert read(too_many).state == "cancelled"


def test_cancel_stops_every_rank(worker, dataset_id):
    from backend.db import get_sessionmaker
    from backend.models import TrainingRun
    from backend.services.run_lifecycle import cancel_run

    run_id = launch(dataset_id, gpus=2, epochs=400, seed=13)
    wait_for(run_id, lambda r: r.state == "running" and r.current_epoch >= 1, worker, timeout=300)
    assert len(ranks_of(run_id)) == 2
    t0 = time.monotonic()
    with get_sessionmaker()() as db:
        cancel_run(db, db.get(TrainingRun, run_id))
    run = wait_for(run_id, lambda r: r.state == "cancelled", worker, timeout=90)
    latency = time.monotonic() - t0
    print(f"\n2-process cancel -> cancelled in {latency:.2f} s")
    assert latency < 20 and run.current_epoch < 400
    assert ranks_of(run_id) == {}, "a rank outlived the cancel"


def test_a_killed_rank_fails_the_run_and_retry_resumes_it(worker, dataset_id):
    from backend.db import get_sessionmaker
    from backend.models import TrainingRun
    from backend.services.run_lifecycle import retry_run

    epochs = 12  # killed after its second epoch, well before its last
    run_id = launch(dataset_id, gpus=2, epochs=epochs, seed=14)
    wait_for(run_id, lambda r: r.state == "running" and r.current_epoch >= 2, worker, timeout=300)
    ranks = wait_until(lambda: len(r := ranks_of(run_id)) == 2 and r, "both ranks")
    killed_after = read(run_id).current_epoch
    os.kill(ranks[1], signal.SIGKILL)
    deadline = time.monotonic() + 120
    while (run := read(run_id)).state == "running":
        assert time.monotonic() < deadline, "a dead rank left the run hanging"
        time.sleep(0.2)
    assert run.state == "failed", (run.state, run.error)
    assert "rank 1 ended with signal SIGKILL" in run.error, run.error
    assert "retry the run" in run.error
    assert ranks_of(run_id) == {}, "a rank outlived the failure"
    assert run.current_epoch < epochs

    with get_sessionmaker()() as db:
        retry_run(db, db.get(TrainingRun, run_id), enqueue_fn=send)
    done = wait_for(run_id, lambda r: r.state == "succeeded", worker, timeout=300)
    assert "resuming" in done.log_tail
    assert [e["epoch"] for e in epochs_of(run_id)] == list(range(1, epochs + 1))
    assert done.current_epoch == epochs and killed_after >= 2


def test_a_killed_worker_takes_its_ranks_and_the_restart_resumes(worker, dataset_id):
    epochs = 12
    run_id = launch(dataset_id, gpus=2, epochs=epochs, seed=15)
    wait_for(run_id, lambda r: r.state == "running" and r.current_epoch >= 2, worker, timeout=300)
    wait_until(lambda: len(ranks_of(run_id)) == 2, "both ranks")
    worker.kill()
    wait_until(lambda: ranks_of(run_id) == {}, "the ranks to end with their worker", 60)
    killed_at = read(run_id)
    assert killed_at.state == "running" and killed_at.current_epoch < epochs, "killed too late"
    worker.start()  # its start-up check finds the run it owned and queues it again
    done = wait_for(run_id, lambda r: r.state == "succeeded", worker, timeout=300)
    assert done.attempts == 2 and "resuming" in done.log_tail
    assert [e["epoch"] for e in epochs_of(run_id)] == list(range(1, epochs + 1))
